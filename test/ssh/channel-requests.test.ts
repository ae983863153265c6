import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { holdDurability } from '../support/durability.ts';

describe('ssh proxy: channel requests on record', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld({ config: { ssh: { listen: '127.0.0.1:0', max_sessions: 2 }, audit: { durability: 'strict' } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('a signal for the target process is recorded before it is sent; one before the process exists is refused on record', async () => {
    const c = await certClient(w, alice);
    try {
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => c.exec('sleep 60', (err, ch) => (err ? reject(err) : resolve(ch))));
      const start = await w.gw.waitForEvent((e) => e.type === 'ssh.exec.start' && e.details.command === 'sleep 60');
      // The target's channel is open once the start record is out; give the exec a moment to be running.
      await new Promise((r) => setTimeout(r, 300));
      // (A non-root test sshd has no privilege separation, and OpenSSH then does not deliver signals: what
      // is checked is vigil's side, the record of what it sent.)
      ch.signal('KILL');
      const sig = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'signal' && e.session_id === start.session_id);
      expect(sig).toMatchObject({ outcome: 'success', details: { signal: 'KILL', channel: start.details.channel } });
      ch.close();
      const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === 'sleep 60');
      const ids = w.gw.events.map((e) => e.id);
      expect(ids.indexOf(sig.id)).toBeLessThan(ids.indexOf(exec.id));

      // The target's channel is opened only once ssh.exec.start is durable (strict): held here, so a signal
      // sent meanwhile has no process to reach. Refused, on record; the command then runs untouched.
      const held = holdDurability(w.gw.gw.services.events);
      const early = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
        c.exec('sleep 1; echo survived', (err, ch2) => {
          if (err) return reject(err);
          ch2.signal('TERM');
          resolve(ch2);
        }),
      );
      let out = '';
      early.on('data', (d: Buffer) => (out += d.toString()));
      const refused = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'signal' && e.outcome === 'failure');
      expect(refused.details).toMatchObject({ signal: 'TERM', why: 'no process runs on this channel yet' });
      held.restore();
      held.release();
      await new Promise((r) => early.once('close', r));
      expect(out).toBe('survived\n');
    } finally {
      c.end();
    }
  });

  it('session channels closed before they started free their slot (ssh.max_sessions)', async () => {
    const c = await certClient(w, alice);
    try {
      // Each is refused (only sftp is relayed) and the client closes the channel, which never started.
      for (let i = 0; i < 4; i++) {
        const err = await new Promise<Error | undefined>((resolve) => c.subsys(`nosuch${i}`, (e) => resolve(e ?? undefined)));
        expect(err?.message).toMatch(/Unable to start subsystem/);
        // ssh2 keeps a channel whose request failed open and does not hand it out: close it as OpenSSH does.
        const open = Object.values((c as unknown as { _chanMgr: { _channels: Record<string, unknown> } })._chanMgr._channels);
        for (const ch of open) if (ch instanceof Object && 'close' in ch) (ch as ssh2.ClientChannel).close();
        await new Promise((r) => setTimeout(r, 100));
      }
      const out = await new Promise<string>((resolve, reject) =>
        c.exec('echo still-served', (err, ch) => {
          if (err) return reject(err);
          let s = '';
          ch.on('data', (d: Buffer) => (s += d.toString()));
          ch.once('close', () => resolve(s));
        }),
      );
      expect(out).toBe('still-served\n');
    } finally {
      c.end();
    }
    // The refusals are written without holding the client up (they reach the bus at a later group commit);
    // the connection's session.end comes after every event of the connection.
    const first = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'subsystem');
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === first.session_id);
    expect(w.eventsOf('ssh.request', (e) => e.details.request === 'subsystem')).toHaveLength(4);
    expect(w.eventsOf('ssh.request', (e) => e.details.request === 'session')).toHaveLength(0);
  }, 60_000);
});
