import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/** Refused forwarding attempts say on record what they tried to reach (an auditor's first question). */
describe('ssh: refused forwards name what they asked for', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('a unix socket forward (-L to a socket) is refused and its event names the socket path', async () => {
    const c = await certClient(w, alice, { strictVendor: false });
    try {
      const err = await new Promise<Error | undefined>((resolve) => c.openssh_forwardOutStreamLocal('/var/run/docker.sock', (e) => resolve(e ?? undefined)));
      expect(err).toBeDefined();
      const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.outcome === 'failure' && /unix socket/.test(String(e.details.reason)));
      expect(ev.details.destination).toBe('/var/run/docker.sock');
    } finally {
      c.end();
    }
  }, 30_000);

  it('remote forwards (-R, TCP and unix socket) are refused and their events name the address asked for', async () => {
    const c = await certClient(w, alice, { strictVendor: false });
    try {
      const tcp = await new Promise<Error | undefined>((resolve) => c.forwardIn('127.0.0.1', 8022, (e) => resolve(e ?? undefined)));
      expect(tcp).toBeDefined();
      const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'tcpip-forward');
      expect(ev).toMatchObject({ outcome: 'failure', details: { bind: '127.0.0.1:8022' } });
      const unix = await new Promise<Error | undefined>((resolve) => c.openssh_forwardInStreamLocal('/tmp/vigil-review.sock', (e) => resolve(e ?? undefined)));
      expect(unix).toBeDefined();
      const ev2 = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'streamlocal-forward@openssh.com');
      expect(ev2).toMatchObject({ outcome: 'failure', details: { bind: '/tmp/vigil-review.sock' } });
    } finally {
      c.end();
    }
  }, 30_000);
});
