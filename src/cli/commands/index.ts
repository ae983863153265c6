import type { Command } from '../command.ts';
import { serveCommand, initCommand, configCheckCommand } from './gateway.ts';
import { ACCESS_COMMANDS } from './access.ts';

/** Every CLI command, in the order `vigil --help` lists them. One line per command module. */
export const COMMANDS: Command[] = [
  serveCommand,
  initCommand,
  configCheckCommand,
  ...ACCESS_COMMANDS,
];
