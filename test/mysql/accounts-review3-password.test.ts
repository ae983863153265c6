import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import type mysql from 'mysql2/promise';
import { startWorld, type MyWorld } from './helpers.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/**
 * A vigil-provisioned MariaDB account's password is vigil's alone: through vigil, the engineer cannot set
 * it (nor create another user), so the server is never reached around vigil and its record.
 */

let w: MyWorld;
const certs: Record<string, IssuedFiles> = {};
const ADMIN_PW = 'adm1n-pw';
const REFUSED = /vigil guardrail "provisioned_account" refused this statement \((.*)\); it was not sent to the target/;

const sql = (who: string, statements: string, target = 'myp') => w.cli([`--user=${target}`, '--skip-column-names', '-e', statements], { creds: certs[who] });
const root = async (q: string) => (await w.db.query(q)).map((r) => r.join('|'));

/** Straight to the server, around vigil, with a password. */
const direct = (user: string, password: string) =>
  new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const c = spawn('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${w.db.port}`, `--user=${user}`, `--password=${password}`, '--skip-ssl', '-e', 'SELECT CURRENT_USER()'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => resolve({ code, stderr }));
  });

beforeAll(async () => {
  w = await startWorld((db, secretFile) => ({
    targets: [
      {
        name: 'myp', protocol: 'mysql', host: '127.0.0.1', port: db.port, user: 'unused_with_provisioning',
        user_provisioning: { admin: { user: 'vigil_admin', password: { file: secretFile('vigil-admin', ADMIN_PW) } }, roles_map: { oncall: ['shop_reader', 'user_admins'] } },
      },
    ],
    roles: [{ name: 'oncall', targets: ['myp'], databases: ['*'] }],
  }));
  await w.db.query(`
    CREATE USER vigil_admin@'%' IDENTIFIED BY '${ADMIN_PW}'; GRANT ALL ON *.* TO vigil_admin@'%' WITH GRANT OPTION;
    CREATE ROLE shop_reader; GRANT SELECT ON shop.* TO shop_reader;
    CREATE ROLE user_admins; GRANT CREATE USER ON *.* TO user_admins;
    GRANT shop_reader TO vigil_admin@'%' WITH ADMIN OPTION; GRANT user_admins TO vigil_admin@'%' WITH ADMIN OPTION;
  `);
  certs.alice = await w.tg.issue({ user: 'alice', roles: ['oncall'] });
}, 120_000);

afterAll(async () => {
  await w?.stop();
});

describe('mysql: a provisioned account cannot be given a password through vigil', () => {
  it('refuses SET PASSWORD / ALTER USER … IDENTIFIED (any spelling, multi-statement, compound, EXECUTE IMMEDIATE, COM_STMT_PREPARE) before it reaches the server', async () => {
    // A session that stays open keeps the account unlocked while the attempts are made.
    const holder: mysql.Connection = await w.connect('myp', { creds: certs.alice, multipleStatements: true });
    holder.on('error', () => {});
    try {
      const [me] = await holder.query<mysql.RowDataPacket[]>('SELECT CURRENT_USER() AS u');
      expect(me[0]!.u).toBe('vigil_alice@%');

      const attempts: [statement: string, password: string][] = [
        ["SET PASSWORD = PASSWORD('pw-set')", 'pw-set'],
        ["set password for current_user() = password('pw-for')", 'pw-for'],
        ["ALTER USER CURRENT_USER() IDENTIFIED BY 'pw-alter'", 'pw-alter'],
        ["ALTER USER vigil_alice@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('pw-via')", 'pw-via'],
        ["BEGIN NOT ATOMIC SET PASSWORD = PASSWORD('pw-compound'); END", 'pw-compound'],
        ["EXECUTE IMMEDIATE 'SET PASSWORD = PASSWORD(''pw-immediate'')'", 'pw-immediate'],
        // Built at run time: vigil cannot read it, so it refuses it.
        ["EXECUTE IMMEDIATE CONCAT('SET PASSWORD = PASSWORD(', QUOTE('pw-dynamic'), ')')", 'pw-dynamic'],
        ["PREPARE p FROM 'ALTER USER CURRENT_USER() IDENTIFIED BY ''pw-prepare-text'''", 'pw-prepare-text'],
      ];
      for (const [statement, password] of attempts) {
        const r = await sql('alice', statement);
        expect(r.code, statement).not.toBe(0);
        expect(r.stderr, statement).toMatch(REFUSED);
        // Compared with the server: the password was never changed, so logging in with it fails.
        const around = await direct('vigil_alice', password);
        expect(around.code, statement).not.toBe(0);
        expect(around.stderr, statement).toMatch(/Access denied for user 'vigil_alice'/);
      }

      // One COM_QUERY holding several statements.
      const multi = await holder.query("SELECT 1; SET PASSWORD = PASSWORD('pw-multi')").then(() => undefined, (e: Error) => e);
      expect(multi?.message).toMatch(REFUSED);
      expect((await direct('vigil_alice', 'pw-multi')).code).not.toBe(0);
      // COM_STMT_PREPARE.
      const prepared = await holder.prepare("SET PASSWORD = PASSWORD('pw-prepared')").then(() => undefined, (e: Error) => e);
      expect(prepared?.message).toMatch(REFUSED);
      expect((await direct('vigil_alice', 'pw-prepared')).code).not.toBe(0);
      // The session goes on.
      const [rows] = await holder.query<mysql.RowDataPacket[]>('SELECT name FROM shop.items WHERE id = 1');
      expect(rows[0]!.name).toBe('apple');
    } finally {
      await holder.end().catch(() => holder.destroy());
    }
  }, 120_000);

  it('refuses creating another user (the mapped role may CREATE USER), and lets look-alikes through', async () => {
    for (const statement of ["CREATE USER sidedoor@'%' IDENTIFIED BY 'pw-side'", "CREATE OR REPLACE USER sidedoor@'%'", "GRANT SELECT ON shop.* TO sidedoor@'%' IDENTIFIED BY 'pw-side'"]) {
      const r = await sql('alice', statement);
      expect(r.stderr, statement).toMatch(REFUSED);
    }
    expect(await root("SELECT COUNT(*) FROM mysql.user WHERE User = 'sidedoor'")).toEqual(['0']);
    // Words in strings and user variables are not statements.
    const ok = await sql('alice', "SET @password = 'x'; SELECT 'SET PASSWORD = PASSWORD(1)', @password");
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('SET PASSWORD = PASSWORD(1)\tx');
  }, 60_000);

  it('records each refusal as a guardrail event and a failed db.query, without the password', async () => {
    const refused = w.tg.events.filter((e) => (e.type === 'guardrail.blocked' || e.type === 'guardrail.unparsed') && e.actor.user === 'alice');
    expect(refused.length).toBeGreaterThanOrEqual(13);
    for (const e of refused) expect(e.details).toMatchObject({ rule: 'provisioned_account', decision: 'block' });
    expect(refused.find((e) => e.details.command === 'COM_STMT_PREPARE')).toBeDefined();
    expect(refused.some((e) => e.type === 'guardrail.unparsed' && /EXECUTE IMMEDIATE of a computed string/.test(String(e.details.reason)))).toBe(true);
    expect(w.queries((e) => e.outcome === 'failure' && String(e.details.query ?? '').startsWith('ALTER USER CURRENT_USER()')).length).toBeGreaterThan(0);
    expect(JSON.stringify(w.tg.events)).not.toMatch(/pw-set|pw-alter|pw-prepared/);
  }, 30_000);
});
