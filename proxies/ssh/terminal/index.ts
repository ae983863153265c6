export { CommandTracker, type CommandTrackerOptions, type TerminalCommand } from './tracker.ts';
export { ShellInputSplitter, readsCommandsFromStdin } from './shell-input.ts';
