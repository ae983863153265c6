import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';

/**
 * Issue #17 item 3: stock OpenSSH clients cannot tell vigil from the backend, and refusals say why once.
 * Default clock skew (60 s) on purpose: the expiry test relies on the allowance NOT covering not_after.
 */
describe('ssh transparency: certificates', () => {
  let w: SshWorld;
  beforeAll(async () => {
    w = await startWorld();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('a certificate that expired seconds ago (inside the skew window) is refused at authentication, never opened', async () => {
    const old = await w.issue({ ttlMs: 1000 });
    // Let it expire: now is past not_after by ~1.5 s, well inside the 60 s skew allowance.
    await new Promise((r) => setTimeout(r, 2500));
    const r = await w.run('ssh', [...w.opts(old), 'web1@127.0.0.1', 'echo reached-the-target']);
    expect(r.code).toBe(255);
    expect(r.stdout).not.toContain('reached-the-target');
    expect(r.stderr).toContain('vigil: certificate expired');
    expect(r.stderr).toMatch(/Permission denied/);
    const failure = await w.gw.waitForEvent((e) => e.type === 'auth.failure' && e.actor.cert_serial === old.creds.serial);
    expect(failure.details.reason).toBe('expired');
    expect(w.eventsOf('session.start', (e) => e.actor.cert_serial === old.creds.serial)).toHaveLength(0);
    expect(w.eventsOf('auth.success', (e) => e.actor.cert_serial === old.creds.serial)).toHaveLength(0);
  });

  it('a refused certificate gets one banner, not one per authentication attempt', async () => {
    const old = await w.issue({ ttlMs: 1000 });
    await new Promise((r) => setTimeout(r, 2500));
    // The client offers the certificate, then the plain key behind it: two refusals, one explanation.
    const r = await w.run('ssh', [...w.opts(old), 'web1@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(w.eventsOf('auth.failure', (e) => e.actor.cert_serial === old.creds.serial || e.details.reason === 'plain_key').length).toBeGreaterThan(1);
    expect(r.stderr.match(/vigil:/g)).toHaveLength(1);
    expect(r.stderr).toContain('vigil: certificate expired');
  });
});
