import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type PgWorld } from '../postgres/helpers.ts';

/**
 * `vigil cert issue --source-address` binds the X.509 certificate too, not only the SSH one: a certificate
 * bound to other addresses is refused on the database listeners (and the API) with reason source_address,
 * exactly as the SSH certificate's source-address option is. Before, the X.509 half worked from anywhere.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const der = (crt: string) => new crypto.X509Certificate(fs.readFileSync(crt)).raw;
const connAs = (who: { crt: string; key: string; creds: { user: string } }) =>
  w.conn('pg').replace(/user=alice/, `user=${who.creds.user}`).replace(/sslcert=\S+/, `sslcert=${who.crt}`).replace(/sslkey=\S+/, `sslkey=${who.key}`);

describe('X.509 client certificates bound to source addresses', () => {
  it('carry the blocks and are checked against the connecting address', async () => {
    const bound = await w.tg.issue({ user: 'bound', roles: ['dba'], sourceAddresses: ['127.0.0.1/32', '10.20.0.0/16'] });
    const id = w.tg.gw.services.identity;
    expect(id.verifyClientCertificate(der(bound.crt), '127.0.0.1')).toMatchObject({ ok: true });
    expect(id.verifyClientCertificate(der(bound.crt), '10.20.3.4')).toMatchObject({ ok: true });
    expect(id.verifyClientCertificate(der(bound.crt), '192.0.2.7')).toMatchObject({ ok: false, reason: 'source_address' });
    // Unbound certificates are unchanged.
    expect(id.verifyClientCertificate(der(w.alice.crt), '192.0.2.7')).toMatchObject({ ok: true });
  });

  it('psql with a certificate bound to 127.0.0.1 works; one bound elsewhere is refused and recorded', async () => {
    const here = await w.tg.issue({ user: 'here', roles: ['dba'], sourceAddresses: ['127.0.0.1/32'] });
    const ok = await w.psql(['-qAt', '-c', "SELECT 'from-here'"], { conn: connAs(here) });
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('from-here');

    const elsewhere = await w.tg.issue({ user: 'elsewhere', roles: ['dba'], sourceAddresses: ['198.51.100.0/24'] });
    const refused = await w.psql(['-qAt', '-c', "SELECT 'must-not-run'"], { conn: connAs(elsewhere) });
    expect(refused.code).not.toBe(0);
    const ev = await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'elsewhere');
    expect(ev.details.reason).toBe('source_address');
    expect(w.queries((e) => e.details.sql === "SELECT 'must-not-run'")).toEqual([]);
  });
});
