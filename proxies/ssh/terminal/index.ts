export { CommandTracker, type CommandTrackerOptions, type TerminalCommand } from './tracker.ts';
export { ShellInputSplitter, readsCommandsFromStdin, startsShell } from './shell-input.ts';
