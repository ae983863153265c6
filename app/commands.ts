/** Every CLI command, in the order `vigil --help` lists them: the core's, then those the proxies add. */
import type { Command } from '../src/cli/command.ts';
import { COMMANDS as CORE_COMMANDS } from '../src/cli/commands/index.ts';
import { sshKnownHostsCommand } from '../proxies/ssh/cli.ts';

export const COMMANDS: Command[] = [...CORE_COMMANDS, sshKnownHostsCommand];
