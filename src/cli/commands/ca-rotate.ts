import type { Command } from '../command.ts';
import { openLocal, localUser } from '../context.ts';
import { stringOpt } from '../command.ts';
import { rotateCa } from '../../identity/ca.ts';

/**
 * `vigil ca rotate`: a new SSH user CA and X.509 CA, trusted alongside the old ones until the last
 * certificate the old ones signed expires, so nothing in use stops working. A running gateway picks the
 * new CA up on its next config reload (SIGHUP or `vigil config reload`).
 */
export const caRotateCommand: Command = {
  name: 'ca rotate',
  summary: 'Replace the user CAs (SSH and X.509); the old ones stay trusted until their last certificate expires.',
  usage:
    '[--data DIR] [--by NAME] [--json]\n\n' +
    '  Certificates issued afterwards are signed by the new CA; certificates of the old CA keep working until the\n' +
    '  latest end of any certificate it issued (at least certs.max_ttl from now, which covers certificates a running\n' +
    '  gateway issues before it reloads). The old private keys are removed; the old public halves stay in\n' +
    '  ca/previous/<id>/. The gateway TLS certificate stays signed by the old CA until that one retires, so\n' +
    '  clients holding only the old ca.crt keep verifying the gateway; new credentials come with a ca.crt that\n' +
    '  holds both. Then reload the running gateway: kill -HUP PID or vigil config reload.',
  options: {
    by: { type: 'string', arg: 'NAME', help: 'who rotates, for the audit event (default: the OS user)' },
    json: { type: 'boolean' },
  },
  examples: ['ca rotate --config /etc/vigil/vigil.yaml', 'ca rotate --data /var/lib/vigil --json'],
  async run(args) {
    const ctx = await openLocal(args);
    try {
      const now = new Date();
      // Trusted until the last certificate or token of the old CA ends; never less than one max_ttl ahead.
      const issued = await ctx.store.listIssuedCerts({ since: now.toISOString(), until: '9999-12-31T23:59:59.999Z' });
      const lastEnd = Math.max(now.getTime() + ctx.config.certs.max_ttl, ...issued.filter((c) => c.kind !== 'token').map((c) => Date.parse(c.notAfter)));
      const r = await rotateCa(ctx.dataDir, new Date(lastEnd), now);
      await ctx.events.emit({
        type: 'ca.rotated',
        outcome: 'success',
        actor: { user: stringOpt(args.values, 'by') ?? localUser(), roles: [] },
        source: ctx.source,
        target: { name: 'ca', protocol: 'vigil' },
        details: { generation: r.id, previous: r.previous, current: r.current, old_trusted_until: r.retireAfter.toISOString(), old_certificates_live: issued.filter((c) => c.kind !== 'token').length },
      });
      if (args.values.json) {
        args.out.write(JSON.stringify({ generation: r.id, previous: r.previous, current: r.current, old_trusted_until: r.retireAfter.toISOString() }) + '\n');
      } else {
        args.out.write(
          `rotated the user CAs in ${ctx.dataDir}/ca (generation ${r.id})\n` +
            `  new SSH user CA:  ${r.current.sshUserCa}\n` +
            `  new X.509 CA:     ${r.current.x509Subject} (serial ${r.current.x509Serial})\n` +
            `  old CA trusted until ${r.retireAfter.toISOString()} (its last certificate's end)\n` +
            `  next: reload the running gateway (kill -HUP PID, or vigil config reload) so it signs with the new CA;\n` +
            `        backends trusting vigil's user CA directly: install \`vigil ca show\` lines for both CAs\n`,
        );
      }
      return 0;
    } finally {
      await ctx.close();
    }
  },
};
