import type { Command } from '../command.ts';
import { serveCommand, initCommand, configCheckCommand } from './gateway.ts';

/** Every CLI command, in the order `vigil --help` lists them. One line per command module. */
export const COMMANDS: Command[] = [
  serveCommand,
  initCommand,
  configCheckCommand,
];
