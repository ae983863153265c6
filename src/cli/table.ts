import type { Command } from './command.ts';

/** The command table (src/cli/commands/index.ts), loaded on demand. */
export async function loadCommandTable(): Promise<Command[]> {
  return (await import('./commands/index.ts')).COMMANDS;
}
