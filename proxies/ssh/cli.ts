import type { Command } from '../../src/cli/command.ts';
import { stringOpt, UsageError } from '../../src/cli/command.ts';
import { openLocal } from '../../src/cli/context.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import type { SshSection } from './config.ts';

/** `vigil ssh known-hosts`: the known_hosts lines for the gateway and for every target in jump-host mode. */
export const sshKnownHostsCommand: Command = {
  name: 'ssh known-hosts',
  summary: 'Print the known_hosts lines clients need for the SSH gateway and for ProxyJump to its targets.',
  usage: '--host GATEWAY_HOSTNAME [--port PORT]\n\n' +
    '  One line for the gateway ([HOST]:PORT) and one per SSH target, with the host key vigil presents when it\n' +
    '  answers for that target in jump-host mode (ssh -J). Append them to ~/.ssh/known_hosts.',
  options: {
    host: { type: 'string', arg: 'HOST', help: 'the name clients use for the gateway (required)' },
    port: { type: 'string', arg: 'PORT', help: 'the gateway\'s SSH port (default: ssh.listen)' },
  },
  examples: ['ssh known-hosts --host gw.example.com >> ~/.ssh/known_hosts'],
  async run(args) {
    const host = stringOpt(args.values, 'host');
    if (!host) throw new UsageError('--host is required (the name clients use for the gateway)');
    const ctx = await openLocal(args);
    try {
      const section = (ctx.config as Record<string, unknown>).ssh as SshSection;
      const portText = stringOpt(args.values, 'port');
      const port = portText === undefined ? section.listen.port : Number(portText);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`--port: expected a port number, got "${portText}"`);
      const { vigilKnownHosts } = await import('./known-hosts.ts'); // ssh2 only for this command
      for (const line of vigilKnownHosts(ctx.identity, ctx.config.targets as TargetConfig[], host, port)) args.out.write(`${line}\n`);
    } finally {
      await ctx.close();
    }
  },
};
