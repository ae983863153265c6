import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../app/main.ts';
import { startWorld, type PgWorld } from '../postgres/helpers.ts';

/**
 * `vigil cert issue --token --source-address` binds the token to those addresses, as it binds the SSH and
 * X.509 certificates: psql using it from any other address is refused (source_address) and recorded.
 * Before, the token was issued without them and worked from anywhere.
 */
let w: PgWorld;
let configPath: string;

beforeAll(async () => {
  w = await startWorld();
  // The CLI on the gateway's data directory, as an admin on the gateway host runs it.
  configPath = path.join(w.base, 'cli.yaml');
  fs.writeFileSync(configPath, `data_dir: ${w.tg.dataDir}\nroles:\n  - name: dba\n    targets: ["*"]\n`);
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

async function issueToken(user: string, sources: string): Promise<string> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await runCli(['cert', 'issue', '--config', configPath, '--user', user, '--roles', 'dba', '--token', '--source-address', sources], out, err);
  expect(e).toBe('');
  expect(code).toBe(0);
  return o.trim();
}

const tokenConn = (user: string) => `host=127.0.0.1 port=${w.port} dbname=pg user=${user} sslmode=verify-full sslrootcert=${w.alice.ca}`;

describe('tokens bound to source addresses', () => {
  it('psql from 127.0.0.1 with a token bound to 10.9.9.0/24 is refused and recorded; one bound to 127.0.0.1 works', async () => {
    const elsewhere = await issueToken('tok-elsewhere', '10.9.9.0/24');
    const refused = await w.psql(['-qAt', '-c', "SELECT 'must-not-run'"], { conn: tokenConn('tok-elsewhere'), env: { PGPASSWORD: elsewhere } });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('token not valid from this address');
    const ev = await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'tok-elsewhere');
    expect(ev.details).toMatchObject({ reason: 'source_address', method: 'token' });
    expect(w.queries((e) => e.details.sql === "SELECT 'must-not-run'")).toEqual([]);

    const here = await issueToken('tok-here', '127.0.0.1/32');
    const ok = await w.psql(['-qAt', '-c', "SELECT 'from-here'"], { conn: tokenConn('tok-here'), env: { PGPASSWORD: here } });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('from-here');
    // The issuance says what the token is bound to.
    const issued = await w.tg.waitForEvent((e) => e.type === 'cert.issued' && e.details.user === 'tok-here', 15_000);
    expect(issued.details).toMatchObject({ kind: 'token', source_addresses: ['127.0.0.1/32'] });
  });

  it('a bound token carries its addresses: the verifier refuses it from outside them, accepts it inside', async () => {
    const { token } = await w.tg.gw.services.identity.issueToken({ user: 'svc', roles: ['dba'], sourceAddresses: ['10.9.9.0/24'] });
    const id = w.tg.gw.services.identity;
    expect(id.verifyToken(token, '127.0.0.1')).toMatchObject({ ok: false, reason: 'source_address' });
    expect(id.verifyToken(token, '10.9.9.77')).toMatchObject({ ok: true, principal: { user: 'svc', sourceAddresses: ['10.9.9.0/24'] } });
    await expect(id.issueToken({ user: 'svc', roles: ['dba'], sourceAddresses: ['10.9.9.1/24'] })).rejects.toThrow(/without host bits/);
  });
});
