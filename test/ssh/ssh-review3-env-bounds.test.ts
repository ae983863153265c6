import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { MAX_ENV_BYTES, MAX_ENV_VARS, REFUSALS_RECORDED_EACH } from '../../proxies/ssh/session-channel.ts';

function execOut(c: ssh2.Client, command: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) =>
    c.exec(command, { env }, (err, ch) => {
      if (err) return reject(err);
      let out = '';
      ch.on('data', (d: Buffer) => (out += d.toString()));
      ch.stderr.on('data', () => {});
      ch.once('close', () => resolve(out));
    }),
  );
}

/**
 * Allow-listed env requests (LC_*) are what a client may pass; an authenticated client must still not
 * make the gateway hold an unbounded number (or size) of them, nor flood the audit log with refusals.
 */
describe('ssh: env requests are bounded', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('beyond 128 variables (like sshd) env requests are refused on record, the flood summarised in one event', async () => {
    const sent = MAX_ENV_VARS + 72;
    const env: Record<string, string> = {};
    for (let i = 0; i < sent; i++) env[`LC_VIGIL_${i}`] = 'x';
    const c = await certClient(w, alice);
    try {
      const out = await execOut(c, 'env | grep -c ^LC_VIGIL_', env);
      expect(Number(out.trim())).toBeLessThanOrEqual(MAX_ENV_VARS);
    } finally {
      c.end();
    }
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && String(e.details.command).startsWith('env | grep'));
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === exec.session_id);
    const refused = w.eventsOf('ssh.request', (e) => e.session_id === exec.session_id && e.details.request === 'env');
    const oneByOne = refused.filter((e) => e.details.refused === undefined);
    expect(oneByOne).toHaveLength(REFUSALS_RECORDED_EACH);
    expect(oneByOne[0]!.details.why).toMatch(/at most 128 environment variables/);
    const summary = refused.filter((e) => e.details.refused !== undefined);
    expect(summary).toHaveLength(1);
    expect(summary[0]!.details).toMatchObject({ refused: sent - MAX_ENV_VARS, unrecorded: sent - MAX_ENV_VARS - REFUSALS_RECORDED_EACH });
  }, 60_000);

  it('huge values are refused beyond the byte bound', async () => {
    const big = 'v'.repeat(30_000);
    const env: Record<string, string> = { LC_BIG_A: big, LC_BIG_B: big, LC_BIG_C: big, LC_BIG_D: big };
    const c = await certClient(w, alice);
    try {
      const out = await execOut(c, 'env | grep -c ^LC_BIG_', env);
      expect(Number(out.trim()) * 30_000).toBeLessThanOrEqual(MAX_ENV_BYTES);
    } finally {
      c.end();
    }
    const refused = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'env' && /bytes of environment/.test(String(e.details.why ?? '')));
    expect(JSON.stringify(refused)).not.toContain(big.slice(0, 100));
  }, 60_000);
});
