export { CommandTracker, type CommandTrackerOptions, type TerminalCommand } from './tracker.ts';
