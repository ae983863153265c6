import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startWorld, type MyWorld } from './helpers.ts';
import { enableGeneralLog, readGeneralLog } from './general-log.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';
import { AccessService } from '../../src/access/service.ts';
import { LOCAL_SOURCE } from '../../src/events/envelope.ts';
import { mysqlAccounts } from '../../proxies/mysql/provisioning.ts';

// A tap, not a stub: the real generator runs; the test keeps what it returned to grep for it afterwards.
const passwords = vi.hoisted(() => [] as string[]);
vi.mock('../../src/accounts/config.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/accounts/config.ts')>();
  return { ...real, sessionPassword: () => { const p = real.sessionPassword(); passwords.push(p); return p; } };
});

let w: MyWorld;
let generalLog: string;
let gatewayLog = '';
const certs: Record<string, IssuedFiles> = {};
const ADMIN_PW = 'adm1n-pw';

const sql = (who: string, statements: string, target = 'myp') => w.cli([`--user=${target}`, '--skip-column-names', '--comments', '-e', statements], { creds: certs[who] });
const background = (who: string, statements: string, target = 'myp') => w.cli([`--user=${target}`, '--skip-column-names', '--comments', '-e', statements], { creds: certs[who], timeoutMs: 90_000 });
const root = async (q: string) => (await w.db.query(q)).map((r) => r.join('|'));
/** The server's own list of connections (SHOW PROCESSLIST needs no temporary table): id, user, statement. */
const processlist = async () => (await w.db.query('SHOW FULL PROCESSLIST')).map((r) => ({ id: Number(r[0]), user: r[1], info: r[7] ?? '' }));
const threadOf = (account: string, marker: string) =>
  waitFor(async () => (await processlist()).find((p) => p.user === account && p.info.includes(marker))?.id, 30_000, `${account} running ${marker}`);
const locked = async (account: string) => (await root(`SELECT IF(JSON_VALUE(Priv, '$.account_locked') IN ('1', 'true'), 'true', 'false') FROM mysql.global_priv WHERE User = '${account}' AND Host = '%'`))[0];
const threadAlive = async (id: number) => (await processlist()).some((p) => p.id === id);

beforeAll(async () => {
  const sink = new Writable({ write(chunk, _enc, cb) { gatewayLog += chunk; cb(); } });
  const target = (name: string, port: number, more: Record<string, unknown>) => ({ name, protocol: 'mysql', host: '127.0.0.1', port, ...more });
  w = await startWorld(
    (db, secretFile) => {
      const adminPw = { file: secretFile('vigil-admin', ADMIN_PW) };
      return {
        targets: [
          target('myp', db.port, { user: 'unused_with_provisioning', user_provisioning: { admin: { user: 'vigil_admin', password: adminPw }, roles_map: { oncall: ['shop_reader'], dba: ['shop_reader', 'shop_writer'] } } }),
          target('myshared', db.port, { user: 'native_user', password: adminPw }),
        ],
        roles: [
          { name: 'oncall', targets: ['myp', 'myshared'], databases: ['*'] },
          { name: 'dba', targets: ['myp'], databases: ['*'] },
          { name: 'analyst', targets: [], databases: ['*'] },
        ],
      };
    },
    { log: pino({ level: 'trace' }, sink) },
  );
  await w.db.query(`
    CREATE USER vigil_admin@'%' IDENTIFIED BY '${ADMIN_PW}'; GRANT ALL ON *.* TO vigil_admin@'%' WITH GRANT OPTION;
    CREATE ROLE shop_reader; GRANT SELECT ON shop.* TO shop_reader;
    CREATE ROLE shop_writer; GRANT INSERT, UPDATE ON shop.* TO shop_writer;
    GRANT shop_reader TO vigil_admin@'%' WITH ADMIN OPTION; GRANT shop_writer TO vigil_admin@'%' WITH ADMIN OPTION;
    SET PASSWORD FOR native_user@'%' = PASSWORD('${ADMIN_PW}');
  `);
  generalLog = await enableGeneralLog(w.db);
  certs.alice = await w.tg.issue({ user: 'alice', roles: ['oncall'] });
  certs.bob = await w.tg.issue({ user: 'bob', roles: ['oncall'] });
}, 120_000);

afterAll(async () => {
  if (process.env.VIGIL_PROV_DEBUG) console.log(JSON.stringify(w.tg.events.filter((e) => /^(db\.user|auth|session\.end)/.test(e.type)).map((e) => [e.type, e.actor.user, e.details]), null, 1).slice(0, 6000));
  await w?.stop();
});

describe('mysql user_provisioning (MariaDB)', () => {
  it("runs each engineer as their own user: the server's view names them, and the other engineer cannot kill or read their session", async () => {
    const sleeper = background('alice', 'SELECT SLEEP(60) /* alice-sleep */');
    const id = await threadOf('vigil_alice', 'alice-sleep');
    expect((await processlist()).find((p) => p.id === id)?.user).toBe('vigil_alice');
    expect((await sql('bob', 'SELECT CURRENT_USER()')).stdout.trim()).toBe('vigil_bob@%');

    // Statements vigil's text checks pass (the KILL is inside a string): the server refuses them.
    const attempts = [
      `EXECUTE IMMEDIATE 'KILL ${id}'`,
      `EXECUTE IMMEDIATE 'KILL QUERY ${id}'`,
      `EXECUTE IMMEDIATE CONCAT('KI', 'LL CONNECTION ', ${id})`,
      `PREPARE s FROM 'KILL QUERY ${id}'; EXECUTE s`,
      `PREPARE s FROM 'KILL ${id}'; EXECUTE s`,
    ];
    for (const q of attempts) {
      const r = await sql('bob', q);
      expect(r.code, q).not.toBe(0);
      // SQL built at run time vigil refuses itself on a provisioned account (accounts-review3-password).
      expect(r.stderr, q).toMatch(/ERROR 1095 \(HY000\).*You are not owner of thread|vigil guardrail "provisioned_account" refused this statement \(unparsable: EXECUTE IMMEDIATE/);
      expect(await threadAlive(id), q).toBe(true);
    }
    // A plain KILL never reaches the server: vigil's own check (defence in depth) knows no such gateway id.
    const plain = await sql('bob', `KILL ${id}`);
    expect(plain.stderr).toMatch(/ERROR 1094 \(HY000\).*Unknown thread id/);
    await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.actor.user === 'bob' && e.details.reason === 'unknown_connection');
    // bob cannot see alice's connection or statement.
    expect((await sql('bob', `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ${id}`)).stdout.trim()).toBe('0');
    expect((await sql('bob', 'SHOW PROCESSLIST')).stdout).not.toMatch(/alice-sleep|vigil_alice/);
    // The mapped role works.
    expect((await sql('bob', 'SELECT name FROM shop.items WHERE id = 1')).stdout.trim()).toBe('apple');

    await root(`KILL QUERY ${id}`);
    await sleeper;
  }, 120_000);

  it('shared-login mode cannot stop it: the same EXECUTE IMMEDIATE kill succeeds through the shared account (the contrast)', async () => {
    const sleeper = background('alice', 'SELECT SLEEP(60) /* shared-sleep */', 'myshared');
    const id = await threadOf('native_user', 'shared-sleep');
    const r = await sql('bob', `EXECUTE IMMEDIATE 'KILL QUERY ${id}'`, 'myshared');
    expect(r.stderr).toBe('');
    const done = await sleeper;
    // alice's statement was interrupted by bob.
    expect(`${done.stdout}${done.stderr}`).toMatch(/^1$|Query execution was interrupted/m);
  }, 120_000);

  it('grants follow vigil roles at the next session, and the user is locked between sessions', async () => {
    const insert = "INSERT INTO shop.items (id, name) VALUES (10, 'fig')";
    certs.carol = await w.tg.issue({ user: 'carol', roles: ['oncall'] });
    const denied = await sql('carol', insert);
    expect(denied.stderr).toMatch(/ERROR 1142 \(42000\).*INSERT command denied to user 'vigil_carol'/);
    await waitFor(async () => (await locked('vigil_carol')) === 'true', 30_000, 'vigil_carol locked');

    certs.carol = await w.tg.issue({ user: 'carol', roles: ['dba'] });
    const ok = await sql('carol', `${insert}; SELECT name FROM shop.items WHERE id = 10`);
    expect(ok.stderr).toBe('');
    expect(ok.stdout.trim()).toBe('fig');

    certs.carol = await w.tg.issue({ user: 'carol', roles: ['oncall'] });
    const again = await sql('carol', "UPDATE shop.items SET name = 'x' WHERE id = 10");
    expect(again.stderr).toMatch(/ERROR 1142 \(42000\).*UPDATE command denied/);
    const carolLocks = () => w.tg.events.filter((e) => e.type === 'db.user.locked' && e.details.account === 'vigil_carol').length;
    await waitFor(() => carolLocks() === 3, 30_000, 'vigil_carol locked three times');
    expect(await locked('vigil_carol')).toBe('true');
    // Between sessions its role holds no mapped role.
    expect(await root("SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = 'vigil_carol_roles'")).toEqual(['0']);
    const granted = w.tg.events.filter((e) => e.type === 'db.user.granted' && e.details.account === 'vigil_carol').map((e) => e.details.roles);
    expect(granted).toEqual([['shop_reader'], ['shop_reader', 'shop_writer'], ['shop_reader']]);
  }, 120_000);

  it('two sessions of one engineer share the user: it stays unlocked while either is live', async () => {
    certs.dave = await w.tg.issue({ user: 'dave', roles: ['oncall'] });
    const first = background('dave', 'SELECT SLEEP(60) /* dave-first */');
    const id = await threadOf('vigil_dave', 'dave-first');
    expect((await sql('dave', 'SELECT CURRENT_USER()')).stdout.trim()).toBe('vigil_dave@%');
    await new Promise((r) => setTimeout(r, 300));
    expect(await locked('vigil_dave')).toBe('false');
    expect(await threadAlive(id)).toBe(true);
    await root(`KILL QUERY ${id}`);
    await first;
    await waitFor(async () => (await locked('vigil_dave')) === 'true', 30_000, 'vigil_dave locked after its last session');
  }, 120_000);

  it('locking the vigil user locks the account and kills its backend connections', async () => {
    certs.erin = await w.tg.issue({ user: 'erin', roles: ['oncall'] });
    const sleeper = background('erin', 'SELECT SLEEP(60) /* erin-sleep */');
    const id = await threadOf('vigil_erin', 'erin-sleep');
    const access = new AccessService({ config: w.tg.gw.services.config, store: w.tg.gw.services.store, events: w.tg.gw.services.events });
    const t0 = performance.now();
    await access.lock({ user: 'ops', roles: [], source: LOCAL_SOURCE, local: true }, { user: 'erin', reason: 'offboarded' });
    await waitFor(async () => !(await threadAlive(id)), 30_000, 'backend thread gone');
    const gone = performance.now() - t0;
    await waitFor(async () => (await locked('vigil_erin')) === 'true', 30_000, 'vigil_erin locked');
    const lockedAfter = performance.now() - t0;
    const done = await sleeper;
    expect(done.code).not.toBe(0);
    const ev = await w.tg.waitForEvent((e) => e.type === 'db.user.locked' && e.details.account === 'vigil_erin');
    expect(ev.details).toMatchObject({ reason: 'locked', locked: true });
    const at = (e: { time: string }) => Date.parse(e.time);
    const lockEvent = w.tg.events.find((e) => e.type === 'lock.created' && e.details.user === 'erin')!;
    // session.end is written by the proxy as the cut session closes, independently of the account lock: wait for it.
    const endEvent = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.actor.user === 'erin');
    console.log(
      `[figure] mariadb lock of erin: audit times lock.created -> session.end ${at(endEvent) - at(lockEvent)} ms -> db.user.locked (ACCOUNT LOCK + revoke + KILL CONNECTION done) ${at(ev) - at(lockEvent)} ms; ` +
        `seen by polling the stock client: thread gone ${gone.toFixed(0)} ms, account_locked ${lockedAfter.toFixed(0)} ms (enforcement interval 250 ms; load average ${os.loadavg()[0]!.toFixed(1)} on ${os.cpus().length} cores)`,
    );
  }, 120_000);

  it('refuses the session with a native error and an event when the user cannot be provisioned', async () => {
    await root("CREATE USER vigil_frank@'%' IDENTIFIED BY 'not-vigils'");
    certs.frank = await w.tg.issue({ user: 'frank', roles: ['oncall'] });
    const r = await sql('frank', 'SELECT 1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERROR \d+ \(\w+\).*vigil: could not prepare your database account on target myp/);
    const failed = await w.tg.waitForEvent((e) => e.type === 'db.user.provisioning_failed' && e.details.account === 'vigil_frank');
    expect(failed.details.error).toMatch(/exists and is not managed by vigil/);
    expect(await locked('vigil_frank')).toBe('false');
  }, 60_000);

  it("the general log names the engineer, and no session password is in it, the audit log, recordings or gateway logs", async () => {
    const log = readGeneralLog(generalLog);
    const connects = log.filter((l) => l.command === 'Connect').map((l) => l.text);
    for (const who of ['vigil_alice', 'vigil_bob', 'vigil_carol', 'vigil_dave', 'vigil_erin']) expect(connects.some((t) => t.startsWith(`${who}@`)), who).toBe(true);
    expect(passwords.length).toBeGreaterThan(5);
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) (e.isDirectory() ? walk(path.join(d, e.name)) : files.push(path.join(d, e.name)));
    };
    walk(w.tg.dataDir);
    const haystacks = [fs.readFileSync(generalLog, 'latin1'), ...files.map((f) => fs.readFileSync(f).toString('latin1')), gatewayLog, JSON.stringify(w.tg.events)];
    for (const p of passwords) for (const h of haystacks) expect(h.includes(p)).toBe(false);
    // What the server was sent instead: the native hash.
    expect(haystacks[0]).toMatch(/IDENTIFIED BY PASSWORD '\*[0-9A-F]{40}'/);
  });
  it('lists the managed accounts left open (what a gateway sweeps and locks at start), and only those', async () => {
    // The gateway start sweep (proxies/mysql/listener.ts) locks what listOpen finds; the wiring is tested on
    // Postgres (test/postgres/provisioning.test.ts), the MariaDB query here.
    process.env.VIGIL_TEST_MY_ADMIN_PW = ADMIN_PW;
    const driver = mysqlAccounts({ name: 'myp', protocol: 'mysql', host: '127.0.0.1', port: w.db.port } as never, { admin: { user: 'vigil_admin', password: { env: 'VIGIL_TEST_MY_ADMIN_PW' } } } as never, 10_000);
    await driver.open('vigil_ivy', ['shop_reader'], 'left-by-a-dead-gateway');
    await root("CREATE USER IF NOT EXISTS not_vigils@'%'");
    const open = await driver.listOpen();
    expect(open).toContain('vigil_ivy');
    expect(open).not.toContain('not_vigils');
    expect(open).not.toContain('vigil_admin');
    const r = await driver.close('vigil_ivy');
    expect(r.revoked).toEqual(['shop_reader']);
    expect(await locked('vigil_ivy')).toBe('true');
    expect(await driver.listOpen()).not.toContain('vigil_ivy');
  }, 60_000);
});
