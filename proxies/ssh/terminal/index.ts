export { CommandTracker, type CommandTrackerOptions, type TerminalCommand, type SubmittedLine } from './tracker.ts';
export { ShellInputSplitter, readsCommandsFromStdin, startsShell } from './shell-input.ts';
