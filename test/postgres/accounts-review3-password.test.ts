import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import pg from 'pg';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';
import { run } from './helpers.ts';
import { scramVerifier } from '../../proxies/postgres/provisioning.ts';

/**
 * A vigil-provisioned account's password is vigil's alone: through vigil, the engineer cannot set it (nor
 * make another login), so the database is never reached around vigil and its record.
 */

let db: PostgresHandle;
let tg: TestGateway;
let base: string;
const certs: Record<string, IssuedFiles> = {};

const conn = (who: string, target = 'pgp') => {
  const c = certs[who]!;
  return `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${c.creds.user} sslmode=verify-full sslrootcert=${c.ca} sslcert=${c.crt} sslkey=${c.key}`;
};
const psql = (who: string, sql: string, target = 'pgp') => run('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', conn(who, target), '-c', sql]);
/** Straight to the server, around vigil, with a password (scram-sha-256 for every such role: pg_hba). */
const direct = (user: string, password: string) =>
  run('psql', ['-X', '-qAt', '-h', '127.0.0.1', '-p', String(db.port), '-U', user, '-d', 'app', '-c', 'SELECT current_user'], undefined, { PGPASSWORD: password });
async function su(sql: string): Promise<string> {
  const r = await run('psql', ['-X', '-qAt', '-h', '127.0.0.1', '-p', String(db.port), '-U', db.superuser, '-d', 'app', '-c', sql]);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}
/** The account's login limits as the server holds them: validity and connection limit (its password changes at every open). */
const limitsOf = (account: string) => su(`SELECT coalesce(rolvaliduntil::text, 'none') || '|' || rolconnlimit FROM pg_authid WHERE rolname = '${account}'`);

const REFUSED = /ERROR:\s+vigil guardrail "provisioned_account" refused this statement \((.*)\); it was not sent to the target/;

beforeAll(async () => {
  db = await startPostgres();
  // A mapped role that may create roles: what an engineer could use, after SET ROLE, to make a login of their own.
  db.psql('CREATE ROLE role_admins NOLOGIN CREATEROLE');
  base = tempDir('vigil-pgpw-');
  const target = (name: string, more: Record<string, unknown>) => ({ name, protocol: 'postgres', host: '127.0.0.1', port: db.port, database: 'app', ...more });
  tg = await startTestGateway(
    {
      targets: [
        target('pgp', { user: 'unused_with_provisioning', user_provisioning: { admin: { user: db.superuser }, roles_map: { oncall: ['pg_read_all_data', 'role_admins'] } } }),
        target('pgshared', { user: 'trust_user' }),
      ],
      roles: [{ name: 'oncall', targets: ['pgp', 'pgshared'], databases: ['app'] }],
    },
    base,
  );
  certs.alice = await tg.issue({ user: 'alice', roles: ['oncall'] });
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await db?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

describe('postgres: a provisioned account cannot be given a password through vigil', () => {
  it('refuses ALTER ROLE … PASSWORD (any spelling, also what psql \\password sends, in a multi-statement string or a DO block) before it reaches the server', async () => {
    // A session that stays open holds the account open (LOGIN) while the attempts are made.
    const holder = new pg.Client({
      host: '127.0.0.1', port: tg.ports.postgres, database: 'pgp', user: 'alice',
      ssl: { ca: fs.readFileSync(certs.alice!.ca), cert: fs.readFileSync(certs.alice!.crt), key: fs.readFileSync(certs.alice!.key), servername: 'localhost' },
    });
    holder.on('error', () => {});
    await holder.connect();
    try {
      expect((await holder.query('SELECT current_user AS u')).rows[0].u).toBe('vigil_alice');

      const attempts: [sql: string, password: string][] = [
        ["ALTER ROLE CURRENT_USER PASSWORD 'pw-current-user'", 'pw-current-user'],
        ["alter user vigil_alice with encrypted password 'pw-named'", 'pw-named'],
        // psql's \password: the verifier computed client-side, sent as ALTER USER "name" PASSWORD '…'.
        [`ALTER USER "vigil_alice" PASSWORD '${scramVerifier('pw-backslash-password')}'`, 'pw-backslash-password'],
        ["SELECT 1; ALTER ROLE SESSION_USER PASSWORD 'pw-multi'", 'pw-multi'],
        ["SET ROLE role_admins; ALTER ROLE vigil_alice LOGIN PASSWORD 'pw-createrole'", 'pw-createrole'],
        ["DO $$ BEGIN ALTER ROLE CURRENT_USER PASSWORD 'pw-do'; END $$", 'pw-do'],
        // Built at run time: vigil cannot read it, so it refuses it.
        ["DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, 'pw-dynamic'); END $$", 'pw-dynamic'],
      ];
      for (const [sql, password] of attempts) {
        const r = await psql('alice', sql);
        expect(r.code, sql).not.toBe(0);
        expect(r.stderr, sql).toMatch(REFUSED);
        // Compared with the server: the password was never changed, so logging in with it fails.
        const around = await direct('vigil_alice', password);
        expect(around.code, sql).not.toBe(0);
        expect(around.stderr, sql).toMatch(/password authentication failed for user "vigil_alice"/);
      }

      // Extended protocol (Parse): the error is the refusal, the server never saw the statement.
      const ext = await holder.query({ name: 'pw', text: "ALTER ROLE CURRENT_USER PASSWORD 'pw-extended'" }).then(() => undefined, (e: Error & { code?: string }) => e);
      expect(ext?.code).toBe('42501');
      expect(ext?.message).toMatch(/vigil guardrail "provisioned_account" refused this statement/);
      expect((await direct('vigil_alice', 'pw-extended')).code).not.toBe(0);

      // Nor validity, connection limit or a rename of the account.
      for (const sql of ["ALTER ROLE CURRENT_USER VALID UNTIL 'infinity'", 'ALTER ROLE CURRENT_USER CONNECTION LIMIT 50', 'SET ROLE role_admins; ALTER ROLE vigil_alice RENAME TO vigil_alice2']) {
        const r = await psql('alice', sql);
        expect(r.stderr, sql).toMatch(REFUSED);
      }
      expect(await limitsOf('vigil_alice')).toBe('none|-1');
      expect(await su("SELECT count(*) FROM pg_roles WHERE rolname = 'vigil_alice2'")).toBe('0');
    } finally {
      await holder.end().catch(() => {});
    }
  }, 120_000);

  it('refuses creating another login (the mapped role may CREATEROLE), and lets other statements through', async () => {
    const r = await psql('alice', "SET ROLE role_admins; CREATE ROLE sidedoor LOGIN PASSWORD 'pw-sidedoor'");
    expect(r.stderr).toMatch(REFUSED);
    expect(await su("SELECT count(*) FROM pg_roles WHERE rolname = 'sidedoor'")).toBe('0');
    expect((await psql('alice', "SET ROLE role_admins; CREATE USER sidedoor2")).stderr).toMatch(REFUSED);
    // A role without a login is no way in: allowed (the server checks CREATEROLE).
    const nologin = await psql('alice', 'SET ROLE role_admins; CREATE ROLE report_readers');
    expect(nologin.stderr).toBe('');
    expect(await su("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'report_readers'")).toBe('f');
    const ok = await psql('alice', "SELECT current_user; DO $$ BEGIN PERFORM 1; END $$");
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('vigil_alice');
  }, 60_000);

  it('records each refusal as a guardrail event and a failed db.query, without the password', async () => {
    const blocked = tg.events.filter((e) => (e.type === 'guardrail.blocked' || e.type === 'guardrail.unparsed') && e.actor.user === 'alice');
    expect(blocked.length).toBeGreaterThanOrEqual(12);
    for (const e of blocked) expect(e.details).toMatchObject({ rule: 'provisioned_account', decision: 'block' });
    expect(JSON.stringify(tg.events)).not.toMatch(/pw-current-user|pw-named|pw-extended/);
    const named = blocked.find((e) => String(e.details.sql).includes('alter user vigil_alice'))!;
    expect(named.type).toBe('guardrail.blocked');
    expect(String(named.details.reason)).toMatch(/ALTER ROLE on your own account \(PASSWORD\)/);
    expect(blocked.find((e) => e.type === 'guardrail.unparsed')?.details.reason).toMatch(/dynamic SQL/);
    const ext = blocked.find((e) => e.details.protocol === 'extended')!;
    expect(ext.details.statement).toBe('pw');
    const failed = await tg.waitForEvent((e) => e.type === 'db.query' && e.outcome === 'failure' && String(e.details.sql ?? '').includes('CONNECTION LIMIT 50'));
    expect(JSON.stringify(failed.details)).toMatch(/42501/);
  }, 30_000);

  it('a shared-login target is not concerned: dynamic SQL there goes to the server', async () => {
    const r = await psql('alice', "DO $$ BEGIN EXECUTE 'SELECT ' || '1'; END $$", 'pgshared');
    expect(r.stderr).toBe('');
  }, 30_000);
});
