import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWorld, type MyWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;
const sessionOf = (connEvents: AuditEvent[]) => connEvents[0]?.session_id;

describe('mysql proxy with the stock mariadb client', () => {
  it('logs in with a vigil client certificate and records the query', async () => {
    const r = await w.cli(['--user=db', '--ssl-verify-server-cert', '-e', 'SELECT 1+1 AS two, CURRENT_USER() AS u']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('two\tu\n2\tnative_user@%\n');
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT 1+1 AS two, CURRENT_USER() AS u');
    expect(q.actor.user).toBe('alice');
    expect(q.outcome).toBe('success');
    expect(detail(q)).toMatchObject({ command: 'COM_QUERY', rows_returned: 1 });
    expect(typeof detail(q).duration_ms).toBe('number');
    const start = w.tg.events.find((e) => e.type === 'session.start' && e.session_id === q.session_id);
    expect(start?.target).toMatchObject({ name: 'db', protocol: 'mysql', login: 'native_user' });
    await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === q.session_id);
  });

  it('refuses a client without TLS with a clear message and an auth.failure event', async () => {
    const before = w.tg.events.length;
    const r = await w.cli(['--user=db', '-e', 'SELECT 1'], { tls: false });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('TLS with a vigil client certificate is required');
    const f = await w.tg.waitForEvent((e, ) => e.type === 'auth.failure' && w.tg.events.indexOf(e) >= before);
    expect(detail(f).reason).toBe('no_certificate');
    expect(f.target.name).toBe('db');
  });

  it('accepts the vigil token as password (mysql_clear_password over TLS)', async () => {
    const tok = await w.tg.gw.services.identity.issueToken({ user: 'tina', roles: ['dba'] });
    const r = await w.cli(['--user=db', `--ssl-ca=${w.alice.ca}`, `--password=${tok.token}`, '-e', 'SELECT 42'], { tls: false });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('42\n42\n');
    const s = await w.tg.waitForEvent((e) => e.type === 'auth.success' && e.actor.user === 'tina');
    expect(detail(s)).toMatchObject({ credential: 'token', method: 'token' });
    const bad = await w.cli(['--user=db', `--ssl-ca=${w.alice.ca}`, '--password=not-a-token', '-e', 'SELECT 1'], { tls: false });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/ERROR 1045/);
  });

  it('tracks USE and shows the current database in later events', async () => {
    const r = await w.cli(['--user=db', '-e', 'USE shop; SELECT name FROM items WHERE id = 2; SELECT COUNT(*) FROM other.t']);
    expect(r.stdout).toBe('name\npear\nCOUNT(*)\n2\n');
    const q = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT name FROM items WHERE id = 2');
    expect(q.target.database).toBe('shop');
    expect(detail(q).database).toBe('shop');
    expect(detail(q).rows_returned).toBe(1);
  });

  it('names the current database in the event target across switches and back', async () => {
    const r = await w.cli(['--user=db', 'shop', '-e', "SELECT 'in-shop-1'; USE other; SELECT 'in-other'; USE shop; SELECT 'in-shop-2'"]);
    expect(r.stderr).toBe('');
    await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === "SELECT 'in-shop-2'");
    const byText = (q: string) => w.tg.events.find((e) => e.type === 'db.query' && detail(e).query === q)!;
    const [shop1, other, shop2] = [byText("SELECT 'in-shop-1'"), byText("SELECT 'in-other'"), byText("SELECT 'in-shop-2'")];
    expect([shop1, other, shop2].map((e) => [e.target.database, detail(e).database])).toEqual([
      ['shop', 'shop'],
      ['other', 'other'],
      ['shop', 'shop'],
    ]);
    expect(other.target).toMatchObject({ name: 'db', protocol: 'mysql', login: 'native_user' });
  });

  it('starts in the database named on the command line', async () => {
    const r = await w.cli(['--user=db', 'shop', '-e', 'SELECT DATABASE()']);
    expect(r.stdout).toBe('DATABASE()\nshop\n');
  });

  it('picks the database user with TARGET/dbuser and logs in to MariaDB ed25519 users', async () => {
    const r1 = await w.cli(['--user=db/ed_user', '-e', 'SELECT CURRENT_USER()']);
    expect(r1.stderr).toBe('');
    expect(r1.stdout).toBe('CURRENT_USER()\ned_user@%\n');
    const r2 = await w.cli(['--user=db-ed', '-e', 'SELECT CURRENT_USER(), DATABASE()']);
    expect(r2.stderr).toBe('');
    expect(r2.stdout).toBe('CURRENT_USER()\tDATABASE()\ned_user@%\tshop\n');
  });

  it('refuses LOAD DATA LOCAL INFILE with a clear error', async () => {
    const file = path.join(w.base, 'rows.csv');
    fs.writeFileSync(file, '9,x\n');
    const r = await w.cli(['--user=db', '--local-infile=1', '-e', `LOAD DATA LOCAL INFILE '${file}' INTO TABLE shop.items FIELDS TERMINATED BY ','`]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('LOAD DATA LOCAL INFILE is disabled');
    expect((await w.db.query('SELECT COUNT(*) FROM shop.items WHERE id = 9'))[0]![0]).toBe('0');
  });

  it('masks passwords in account statements', async () => {
    const r = await w.cli(['--user=db', '-e', "CREATE USER tmp_u@'%' IDENTIFIED BY 'hunter2-secret'; SET PASSWORD FOR tmp_u@'%' = PASSWORD('other-secret'); DROP USER tmp_u@'%'"]);
    expect(r.stderr).toBe('');
    await w.tg.waitForEvent((e) => e.type === 'db.query' && String(detail(e).query).startsWith('DROP USER tmp_u'));
    const all = JSON.stringify(w.tg.events);
    expect(all).not.toContain('hunter2-secret');
    expect(all).not.toContain('other-secret');
    expect(all).toContain("CREATE USER tmp_u@'%' IDENTIFIED BY '***'");
    expect(all).not.toContain(w.db.port + ':' + 'n@tive-pw');
    expect(all).not.toContain('n@tive-pw');
  });

  it('refuses an unknown target and a database the role does not allow', async () => {
    const r = await w.cli(['--user=nope', '-e', 'SELECT 1']);
    expect(r.stderr).toMatch(/ERROR 1045/);
    const r2 = await w.cli(['--user=db-limited', 'other', '-e', 'SELECT 1']);
    expect(r2.stderr).toMatch(/ERROR 1045/);
    const r3 = await w.cli(['--user=db-limited', 'shop', '-e', 'SELECT 1; USE other; SELECT 2']);
    expect(r3.stdout).toBe('1\n1\n');
    expect(r3.stderr).toMatch(/ERROR 1044 .*access to database 'other' is not allowed/);
    const ev = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.outcome === 'failure' && detail(e).reason === 'database_not_allowed');
    expect(detail(ev).query).toBe('USE other');
    // USE sent as a query (not COM_INIT_DB), also in disguise, is checked the same way.
    const c = await w.connect('db-limited', { database: 'shop', multipleStatements: true });
    try {
      await expect(c.query('USE/*x*/other')).rejects.toMatchObject({ errno: 1044 });
      await expect(c.query('SELECT 1; USE `other`')).rejects.toMatchObject({ errno: 1044 });
      const [[row]] = (await c.query('SELECT DATABASE() AS db')) as unknown as [[{ db: string }]];
      expect(row.db).toBe('shop');
    } finally {
      await c.end();
    }
  });

  it('reports a backend that is down with a clear error and an event', async () => {
    const r = await w.cli(['--user=db-down', '-e', 'SELECT 1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERROR 1429 .*vigil: cannot reach the target database/);
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'db-down');
    expect(detail(end).reason).toBe('backend_error');
    expect(end.outcome).toBe('failure');
  });
});

describe('mysql proxy with mysql2', () => {
  it('records prepared statements with decoded parameters', async () => {
    const c = await w.connect('db', { database: 'shop' });
    try {
      await c.query('CREATE TABLE IF NOT EXISTS params (i BIGINT, s VARCHAR(50), n INT, d DATETIME, b BLOB)');
      const [res] = await c.execute('INSERT INTO params (i, s, n, d, b) VALUES (?, ?, ?, ?, ?)', [-7, 'héllo', null, new Date(Date.UTC(2024, 4, 6, 7, 8, 9)), Buffer.from([1, 2, 255])]);
      expect((res as { affectedRows: number }).affectedRows).toBe(1);
      const [rows] = await c.execute('SELECT i, s FROM params WHERE i = ? AND s = ?', [-7, 'héllo']);
      expect(rows).toEqual([{ i: -7, s: 'héllo' }]);
      const [rows2] = await c.execute('SELECT i, s FROM params WHERE i = ? AND s = ?', [-8, 'nope']);
      expect(rows2).toEqual([]);
    } finally {
      await c.end();
    }
    const ins = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).command === 'COM_STMT_EXECUTE' && String(detail(e).query).startsWith('INSERT INTO params'));
    const params = detail(ins).params;
    expect(params[0]).toBe(-7);
    expect(params[1]).toBe('héllo');
    expect(params[2]).toBeNull();
    expect(String(params[3])).toMatch(/^2024-05-06 \d\d:08:09/);
    expect(params[4]).toEqual({ hex: '0102ff', length: 3 });
    expect(detail(ins).rows_affected).toBe(1);
    expect(detail(ins).database).toBe('shop');
    const prep = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).command === 'COM_STMT_PREPARE' && String(detail(e).query).startsWith('SELECT i, s FROM params'));
    expect(detail(prep)).toMatchObject({ params_count: 2 });
    expect(typeof detail(prep).statement_id).toBe('number');
    const sel = await waitFor(() => {
      const found = w.queries((e) => detail(e).command === 'COM_STMT_EXECUTE' && String(detail(e).query).startsWith('SELECT i, s FROM params'));
      return found.length === 2 ? found : undefined;
    });
    expect(sel.map((e) => [detail(e).params, detail(e).rows_returned])).toEqual([[[-7, 'héllo'], 1], [[-8, 'nope'], 0]]);
  });

  it('masks parameters bound to secret-looking columns', async () => {
    const c = await w.connect('db', { database: 'shop' });
    try {
      await c.query('CREATE TABLE IF NOT EXISTS accounts (id INT, password VARCHAR(50))');
      await c.execute('INSERT INTO accounts (id, password) VALUES (?, ?)', [1, 'topsecret-pw']);
      await c.execute('UPDATE accounts SET password = ? WHERE id = ?', ['next-secret', 1]);
    } finally {
      await c.end();
    }
    const ev = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(detail(e).query).startsWith('UPDATE accounts') && detail(e).command === 'COM_STMT_EXECUTE');
    expect(detail(ev).params).toEqual(['***', 1]);
    const all = JSON.stringify(w.tg.events);
    expect(all).not.toContain('topsecret-pw');
    expect(all).not.toContain('next-secret');
  });

  it('records each result set of a multi-statement query', async () => {
    const c = await w.connect('db', { multipleStatements: true });
    try {
      const [results] = await c.query('USE shop; SELECT id FROM items ORDER BY id; UPDATE items SET price = price WHERE id < 3; SELECT nope FROM items');
      void results;
    } catch (e) {
      expect((e as { errno: number }).errno).toBe(1054);
    } finally {
      await c.end();
    }
    const sel = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT id FROM items ORDER BY id');
    expect(detail(sel)).toMatchObject({ rows_returned: 3, statement_index: 1, database: 'shop' });
    const upd = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(detail(e).query).startsWith('UPDATE items SET price'));
    // mysql2 sets CLIENT_FOUND_ROWS: matched rows are reported.
    expect(detail(upd)).toMatchObject({ rows_affected: 2, statement_index: 2 });
    const bad = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === 'SELECT nope FROM items');
    expect(bad.outcome).toBe('failure');
    expect(detail(bad).error).toMatchObject({ code: 1054, sqlstate: '42S22' });
  });

  it('reassembles payloads of 16 MiB and more', async () => {
    const c = await w.connect('db');
    try {
      const big = 'x'.repeat(17 * 1024 * 1024);
      const [rows] = await c.execute('SELECT LENGTH(?) AS n', [big]);
      expect(rows).toEqual([{ n: big.length }]);
      const [rows2] = await c.query(`SELECT LENGTH('${big}') AS n`);
      expect(rows2).toEqual([{ n: big.length }]);
    } finally {
      await c.end();
    }
    const ev = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(detail(e).query).startsWith('SELECT LENGTH(?)') && detail(e).command === 'COM_STMT_EXECUTE');
    expect(detail(ev).params[0]).toMatchObject({ length: 17 * 1024 * 1024, truncated: true });
  }, 60_000);

  it('refuses COM_CHANGE_USER and keeps the session usable', async () => {
    const c = await w.connect('db');
    try {
      await expect(c.changeUser({ user: 'root' })).rejects.toThrow(/COM_CHANGE_USER is not allowed/);
    } finally {
      c.destroy();
    }
  });

  it('KILL QUERY through the gateway reaches the right backend connection, only for the same user', async () => {
    const a = await w.connect('db');
    const b = await w.connect('db');
    const bob = await w.tg.issue({ user: 'bob', roles: ['dba'] });
    const c = await w.connect('db', { creds: bob });
    try {
      const gatewayId = a.threadId!;
      const [[real]] = (await a.query('SELECT CONNECTION_ID() AS id')) as unknown as [[{ id: number }]];
      expect(real.id).not.toBe(gatewayId === real.id ? -1 : gatewayId); // the backend's own id is not what the client sees
      const started = Date.now();
      const sleeping = a.query('SELECT SLEEP(30) AS s').then(
        ([rows]) => ({ rows }),
        (e) => ({ err: e as { errno: number } }),
      );
      // The SLEEP must be running on the server before anyone kills it (a KILL QUERY of an idle thread does nothing).
      await waitFor(async () => {
        const [rows] = (await b.query(`SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ${real.id}`)) as unknown as [{ STATE: string }[]];
        return rows[0]?.STATE === 'User sleep';
      }, 10_000, 'the SLEEP running');
      await expect(c.query(`KILL QUERY ${gatewayId}`)).rejects.toThrow(/Unknown thread id/);
      const refused = await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.actor.user === 'bob');
      expect(refused.outcome).toBe('failure');
      await b.query(`KILL QUERY ${gatewayId}`);
      const out = await sleeping;
      expect(Date.now() - started).toBeLessThan(10_000);
      expect('err' in out ? out.err.errno : (out.rows as { s: number }[])[0]!.s).toSatisfy((v: number) => v === 1317 || v === 1);
      const ok = await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success' && e.actor.user === 'alice');
      expect(detail(ok)).toMatchObject({ gateway_connection_id: gatewayId, kill: 'query' });
      const [[again]] = (await a.query('SELECT 5 AS five')) as unknown as [[{ five: number }]];
      expect(again.five).toBe(5);
    } finally {
      a.destroy();
      b.destroy();
      c.destroy();
    }
  }, 30_000);

  it('KILL by the id CONNECTION_ID() returns (the backend thread), as a statement and prepared, only of your own connections', async () => {
    const a = await w.connect('db');
    const b = await w.connect('db');
    const bob = await w.tg.issue({ user: 'bob', roles: ['dba'] });
    const c = await w.connect('db', { creds: bob });
    try {
      const [[own]] = (await a.query('SELECT CONNECTION_ID() AS id')) as unknown as [[{ id: number }]];
      // Handshake ids (vigil's) and backend thread ids never overlap.
      expect(a.threadId!).toBeGreaterThanOrEqual(0x80000000);
      expect(own.id).toBeLessThan(0x80000000);
      const sleep = () => a.query('SELECT SLEEP(30) AS s').then(([rows]) => (rows as { s: number }[])[0]!.s, (e: { errno: number }) => e.errno);
      const interrupted = (v: number) => v === 1317 || v === 1;
      // Another user cannot name alice's backend thread.
      const first = sleep();
      await waitFor(async () => {
        const [rows] = (await b.query(`SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ${own.id}`)) as unknown as [{ STATE: string }[]];
        return rows[0]?.STATE === 'User sleep';
      }, 10_000, 'the SLEEP running');
      await expect(c.query(`KILL QUERY ${own.id}`)).rejects.toThrow(/Unknown thread id/);
      await expect(c.execute(`KILL QUERY ${own.id}`)).rejects.toThrow(/with the id of one of your own connections; a prepared KILL takes the thread id CONNECTION_ID\(\) returns/);
      // Her other connection can, as a statement…
      await b.query(`KILL QUERY ${own.id}`);
      expect(interrupted(await first)).toBe(true);
      const byBackend = await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success' && e.actor.user === 'alice' && detail(e).backend_thread_id === own.id);
      expect(detail(byBackend)).toMatchObject({ kill: 'query', query: `KILL QUERY ${own.id}` });
      expect(detail(byBackend).gateway_connection_id).toBeUndefined();
      // …and prepared (the text goes to the server as written); a prepared KILL by the handshake id is refused.
      await expect(b.execute(`KILL QUERY ${a.threadId}`)).rejects.toThrow(/a prepared KILL takes the thread id CONNECTION_ID\(\) returns/);
      const second = sleep();
      await waitFor(async () => {
        const [rows] = (await b.query(`SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ${own.id}`)) as unknown as [{ STATE: string }[]];
        return rows[0]?.STATE === 'User sleep';
      }, 10_000, 'the second SLEEP running');
      await b.execute(`KILL QUERY ${own.id}`);
      expect(interrupted(await second)).toBe(true);
      await w.tg.waitForEvent((e) => e.type === 'db.query' && e.actor.user === 'alice' && e.outcome === 'success' && String(detail(e).query) === `KILL QUERY ${own.id}` && detail(e).command === 'COM_STMT_EXECUTE');
      const [[again]] = (await a.query('SELECT 5 AS five')) as unknown as [[{ five: number }]];
      expect(again.five).toBe(5);
      // KILL CONNECTION: the killed connection's client hears "Connection was killed" (1927), as from the
      // server, not that the server went away; its session.end says which session killed it.
      const killing = a.query('SELECT SLEEP(30) AS s').then(() => 0, (e: { errno: number }) => e.errno);
      await waitFor(async () => {
        const [rows] = (await b.query(`SELECT STATE FROM information_schema.PROCESSLIST WHERE ID = ${own.id}`)) as unknown as [{ STATE: string }[]];
        return rows[0]?.STATE === 'User sleep';
      }, 10_000, 'the third SLEEP running');
      await b.query(`KILL CONNECTION ${own.id}`);
      expect(await killing).toBe(1927);
      const ended = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.actor.user === 'alice' && detail(e).backend_thread_id === own.id);
      // The killer's db.cancel (success) is written when the server answers it, which may come after the
      // killed session's end: wait for it rather than read the events seen so far.
      const kill = await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success' && detail(e).kill === 'connection');
      expect(detail(ended).killed_by_session).toBe(kill.session_id);
    } finally {
      a.destroy();
      b.destroy();
      c.destroy();
    }
  }, 60_000);

  it('Ctrl-C in the mariadb client cancels the running query through the gateway', async () => {
    const erin = await w.tg.issue({ user: 'erin', roles: ['dba'] });
    const child = spawn('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${w.port}`, '--user=db', `--ssl-ca=${erin.ca}`, `--ssl-cert=${erin.crt}`, `--ssl-key=${erin.key}`, '-e', 'SELECT SLEEP(20)'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.on('exit', r));
    const t0 = Date.now();
    await waitFor(() => w.tg.events.some((e) => e.type === 'session.start' && e.actor.user === 'erin'));
    // Ctrl-C cancels only while a query runs (before that the client just exits): wait for the server to run it.
    await waitFor(async () => (await w.db.query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(20)'")).length > 0, 15_000, 'the SLEEP running');
    child.kill('SIGINT');
    const cancel = await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success' && e.actor.user === 'erin', 15_000);
    expect(detail(cancel).kill).toBe('query');
    await exited;
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(out).toContain('Query execution was interrupted');
  }, 30_000);
});

describe('mysql proxy certificate checks', () => {
  it('refuses a certificate from another CA', async () => {
    const dir = path.join(w.base, 'rogue');
    fs.mkdirSync(dir);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', path.join(dir, 'k.pem'), '-out', path.join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=alice'], { stdio: 'ignore' });
    const creds = { ...w.alice, crt: path.join(dir, 'c.pem'), key: path.join(dir, 'k.pem') };
    const r = await w.cli(['--user=db', '-e', 'SELECT 1'], { creds });
    expect(r.stderr).toMatch(/ERROR 1045/);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && detail(e).reason === 'wrong_ca');
  });

  it('refuses an expired certificate and cuts a live session at expiry', async () => {
    const short = await w.tg.issue({ user: 'carol', roles: ['dba'], ttlMs: 2500 });
    const c = await w.connect('db', { creds: short });
    const closed = new Promise<Error>((r) => c.on('error', r));
    await c.query('SELECT 1');
    const err = await closed;
    expect(err.message).toMatch(/certificate has expired/);
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end' && e.actor.user === 'carol');
    expect(detail(end).reason).toBe('cert_expired');
    const r = await w.cli(['--user=db', '-e', 'SELECT 1'], { creds: short });
    expect(r.stderr).toMatch(/ERROR 1045/);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'carol' && detail(e).reason === 'expired');
  }, 20_000);

  it('cuts a live session on revocation and refuses the revoked certificate', async () => {
    const creds = await w.tg.issue({ user: 'dave', roles: ['dba'] });
    const c = await w.connect('db', { creds });
    const closed = new Promise<Error>((r) => c.on('error', r));
    await c.query('SELECT 1');
    await w.tg.gw.services.store.revoke({ serial: creds.creds.serial, reason: 'test', by: 'admin', time: new Date().toISOString() });
    const err = await closed;
    expect(err.message).toMatch(/revoked/);
    const r = await w.cli(['--user=db', '-e', 'SELECT 1'], { creds });
    expect(r.stderr).toMatch(/ERROR 1045/);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'dave' && detail(e).reason === 'revoked');
  }, 20_000);

  it('builds every db.query and db.cancel detail with its members in sorted order (the audit encoder writes those directly)', () => {
    const unsorted: string[] = [];
    const check = (v: unknown, where: string): void => {
      if (Array.isArray(v)) return v.forEach((x, i) => check(x, `${where}[${i}]`));
      if (v === null || typeof v !== 'object') return;
      const keys = Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] !== undefined);
      if (keys.join() !== [...keys].sort().join()) unsorted.push(`${where}: ${keys.join(', ')}`);
      for (const k of keys) check((v as Record<string, unknown>)[k], `${where}.${k}`);
    };
    const events = w.tg.events.filter((e) => e.type === 'db.query' || e.type === 'db.cancel');
    // The tests above produced every kind of detail: results, errors, refusals, parameters, multi-statements, KILL.
    expect(new Set(events.map((e) => e.type))).toEqual(new Set(['db.query', 'db.cancel']));
    expect(events.some((e) => detail(e).error?.sqlstate !== undefined && Array.isArray(detail(e).params) === false)).toBe(true);
    for (const e of events) check(e.details, `${e.type} ${detail(e).command}`);
    expect(unsorted).toEqual([]);
  });
});
