import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import path from 'node:path';
import pg from 'pg';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startPostgres, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, secretsDir, waitFor } from '../support/tmp.ts';
import { run } from './helpers.ts';
import { encodeCancelRequest, encodeMessage, encodeSslRequest, encodeStartupMessage, cstr, F } from '../../proxies/postgres/frontend.ts';
import { parseConfig } from '../../app/config.ts';

/**
 * Transparency of the Postgres proxy (issue 17): what a client learns about its backend through vigil is
 * what it would learn direct — the backend's real pid, the negotiated protocol version — and what a DBA
 * sees of a vigil connection names the engineer.
 */
let pgs: PostgresHandle;
let tg: TestGateway;
let alice: IssuedFiles;
let base: string;

beforeAll(async () => {
  pgs = await startPostgres();
  base = tempDir('vigil-pgt-');
  const secret = secretsDir(base)('scram', PASSWORDS.scram_user);
  const target = (name: string, more: Record<string, unknown> = {}) => ({
    name, protocol: 'postgres', host: '127.0.0.1', port: pgs.port, database: 'app', user: 'scram_user', password: { file: secret }, ...more,
  });
  tg = await startTestGateway(
    {
      targets: [
        target('pg'),
        target('pg-tagged', { application_name: '[{target}] {user}: {client_app}' }),
        target('pg-small', { max_message_size: '1MiB' }),
        target('pg-big', { max_message_size: '16MiB' }),
      ],
      certs: { clock_skew: 0 },
      roles: [{ name: 'dba', targets: ['pg', 'pg-tagged', 'pg-small', 'pg-big'], databases: ['app', 'restored'] }],
    },
    base,
  );
  alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  pgs.psql('CREATE TABLE blobs (id int PRIMARY KEY, data bytea); ALTER TABLE blobs OWNER TO scram_user');
  // 1.5 MB of bytea: 3 MB as hex text in a DataRow or in pg_dump's COPY rows.
  pgs.psql("INSERT INTO blobs SELECT 1, decode(repeat(md5('x'), 1572864 / 16), 'hex') || decode(repeat('ab', 1572864 / 2), 'hex')");
  pgs.psql('CREATE DATABASE restored OWNER scram_user', 'postgres');
});
afterAll(async () => {
  await tg?.stop();
  await pgs?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

const conn = (dbname = 'pg', extra = '') =>
  `host=127.0.0.1 port=${tg.ports.postgres} dbname=${dbname} user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key} ${extra}`;
const psql = (args: string[], c = conn()) => run('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', c, ...args]);

const pgClient = (extra: Partial<pg.ClientConfig> = {}) =>
  new pg.Client({
    host: '127.0.0.1',
    port: tg.ports.postgres,
    database: 'pg',
    user: 'alice',
    ssl: { ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(alice.crt), key: fs.readFileSync(alice.key), servername: 'localhost' },
    ...extra,
  });
type KeyedClient = pg.Client & { processID: number; secretKey: number };

describe('postgres transparency: the backend process id', () => {
  it('BackendKeyData carries the real backend pid: pg_backend_pid, NOTIFY from self, pg_stat_activity, pg_terminate_backend', async () => {
    const a = pgClient({ application_name: 'pid-check' }) as KeyedClient;
    await a.connect();
    const { rows } = await a.query('SELECT pg_backend_pid() AS pid');
    expect(a.processID).toBe(rows[0].pid);

    // LISTEN/NOTIFY self-filtering: a notification from this very session names its own pid.
    await a.query('LISTEN self_chan');
    const got = new Promise<pg.Notification>((resolve) => a.once('notification', resolve));
    await a.query("NOTIFY self_chan, 'mine'");
    expect((await got).processId).toBe(a.processID);

    // Another session finds it in pg_stat_activity by the pid its driver reported, and terminates it.
    const b = pgClient() as KeyedClient;
    await b.connect();
    const seen = await b.query('SELECT usename, application_name FROM pg_stat_activity WHERE pid = $1', [a.processID]);
    expect(seen.rows).toEqual([{ usename: 'scram_user', application_name: 'alice via pid-check' }]);
    const aGone = new Promise<Error>((resolve) => a.once('error', resolve));
    a.on('error', () => {});
    const term = await b.query('SELECT pg_terminate_backend($1) AS ok', [a.processID]);
    expect(term.rows[0].ok).toBe(true);
    expect((await aGone).message).toMatch(/terminating connection due to administrator command/);
    await b.end();
  });

  it('a cancel with the driver key stops the query of that session and is mapped by the secret, not the pid alone', async () => {
    const a = pgClient() as KeyedClient;
    await a.connect();
    a.on('error', () => {});
    const sleeping = a.query('SELECT pg_sleep(30)').then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    await waitFor(() => pgs.psql(`SELECT count(*) FROM pg_stat_activity WHERE pid = ${a.processID} AND state = 'active'`) === '1', 10_000, 'pg_sleep to run');
    const sendCancel = async (pid: number, secret: Buffer) => {
      const s = net.connect(tg.ports.postgres, '127.0.0.1');
      await new Promise((r) => s.once('connect', r));
      s.end(encodeCancelRequest(pid, secret));
      await new Promise((r) => s.once('close', r));
    };
    const secret = Buffer.alloc(4);
    secret.writeInt32BE(a.secretKey);
    // The real pid with a wrong secret is not forwarded (and is recorded as such).
    const wrong = Buffer.from(secret.map((x) => x ^ 0xff));
    const before = tg.events.filter((e) => e.type === 'db.cancel' && e.outcome === 'failure').length;
    await sendCancel(a.processID, wrong);
    await waitFor(() => tg.events.filter((e) => e.type === 'db.cancel' && e.outcome === 'failure').length > before, 10_000, 'refused cancel');
    expect(pgs.psql(`SELECT state FROM pg_stat_activity WHERE pid = ${a.processID}`)).toBe('active');
    await sendCancel(a.processID, secret);
    const err = await sleeping;
    expect(err?.code).toBe('57014');
    await tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success');
    await a.end();
  });
});

describe('postgres transparency: application_name', () => {
  it('the backend connection is named after the engineer, with the client application inside; SET still works', async () => {
    // Separate -c: pg_stat_activity is read once per transaction.
    const q = 'SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()';
    const own = await psql(['-qAt', '-c', q, '-c', "SET application_name = 'renamed'", '-c', q], conn('pg', 'application_name=nightly-report'));
    expect(own.stderr).toBe('');
    expect(own.stdout.trim().split('\n')).toEqual(['alice via nightly-report', 'renamed']);
    // psql names itself through fallback_application_name.
    const fallback = await psql(['-qAt', '-c', 'SHOW application_name']);
    expect(fallback.stdout.trim()).toBe('alice via psql');
    // A driver that sends no name at all.
    const c = pgClient();
    await c.connect();
    expect((await c.query('SHOW application_name')).rows[0].application_name).toBe('alice via unknown');
    await c.end();
    // The per-target template.
    const tagged = await psql(['-qAt', '-c', 'SHOW application_name'], conn('pg-tagged', 'application_name=etl'));
    expect(tagged.stdout.trim()).toBe('[pg-tagged] alice: etl');
  });

  it('a long client name is shortened so the engineer stays inside the 63 bytes the server keeps', async () => {
    const { renderApplicationName } = await import('../../proxies/postgres/config.ts');
    const long = 'x'.repeat(100);
    const name = renderApplicationName('{client_app} for {user}', { user: 'alice', clientApp: long, target: 'pg' });
    expect(Buffer.byteLength(name)).toBe(63);
    expect(name.endsWith(' for alice')).toBe(true);
    const r = await psql(['-qAt', '-c', 'SHOW application_name'], conn('pg', `application_name=${long}`));
    expect(r.stdout.trim()).toBe(`alice via ${'x'.repeat(63 - 'alice via '.length)}`);
  });

  it('a template without {user} is refused by the configuration', () => {
    const doc = (application_name: string) => ({
      data_dir: path.join(base, 'cfg'),
      targets: [{ name: 'x', protocol: 'postgres', host: '127.0.0.1', port: 5432, user: 'u', application_name }],
    });
    expect(() => parseConfig(doc('{client_app}'), base)).toThrow(/must contain \{user\}/);
    expect(() => parseConfig(doc('{user}/{client_app}'), base)).not.toThrow();
  });
});

describe('postgres transparency: message size limit per target', () => {
  it('a result over the target limit ends the session with 54000 naming the limit and key; pg_dump works with a raised limit', async () => {
    const small = await psql(['-qAt', '-c', 'SELECT length(data) FROM blobs', '-c', 'SELECT data FROM blobs'], conn('pg-small'));
    expect(small.code).not.toBe(0);
    // The statement before the big row ran; the big row did not come through cut.
    expect(small.stdout.trim()).toBe('2359296');
    expect(small.stderr).toMatch(/limit is 1048576 bytes, set by max_message_size of target "pg-small"/);
    const end = await tg.waitForEvent((e) => e.type === 'session.end' && e.target.name === 'pg-small' && e.details.sqlstate === '54000');
    expect(end.details.reason).toBe('backend_error');

    const dumpFile = path.join(base, 'blobs.dump');
    const failed = await run('pg_dump', ['-Fc', '-t', 'blobs', '-f', dumpFile, '-d', conn('pg-small')]);
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toMatch(/max_message_size/);

    const dumped = await run('pg_dump', ['-Fc', '-t', 'blobs', '-f', dumpFile, '-d', conn('pg-big')]);
    expect(dumped.stderr).toBe('');
    expect(dumped.code).toBe(0);
    const restored = await run('pg_restore', ['--no-owner', '-d', conn('pg-big/restored'), dumpFile]);
    expect(restored.stderr).toBe('');
    const sum = (db: string) => pgs.psql('SELECT md5(data) FROM blobs', db);
    expect(sum('restored')).toBe(sum('app'));
  });

  it('a client message over the target limit gets 54000 too', async () => {
    const big = `SELECT length('${'x'.repeat(1_200_000)}')`;
    const r = await run('psql', ['-X', '-qAt', '-d', conn('pg-small'), '-f', '-'], big);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/over the size limit.*limit is 1048576 bytes, set by max_message_size of target "pg-small"/);
    const ok = await run('psql', ['-X', '-qAt', '-d', conn('pg-big'), '-f', '-'], big);
    expect(ok.stdout.trim()).toBe('1200000');
  });
});

describe('postgres transparency: protocol 3.2 startup', () => {
  it('answers protocol 3.2 and _pq_ options with NegotiateProtocolVersion (3.0) like PostgreSQL 15, then serves queries', async () => {
    const raw = net.connect(tg.ports.postgres, '127.0.0.1');
    await new Promise((r) => raw.once('connect', r));
    raw.write(encodeSslRequest());
    await new Promise((r) => raw.once('data', r));
    const s = tls.connect({ socket: raw, ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(alice.crt), key: fs.readFileSync(alice.key), servername: 'localhost' });
    await new Promise((r, j) => s.once('secureConnect', r).once('error', j));
    const messages: { type: string; body: Buffer }[] = [];
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 1 + buf.readUInt32BE(1)) {
        const len = buf.readUInt32BE(1);
        messages.push({ type: String.fromCharCode(buf[0]), body: buf.subarray(5, 1 + len) });
        buf = buf.subarray(1 + len);
      }
    });
    const count = (t: string) => messages.filter((m) => m.type === t).length;
    s.write(encodeStartupMessage([['user', 'alice'], ['database', 'pg'], ['_pq_.future_feature', 'on']], 196610));
    await waitFor(() => count('Z') === 1 || count('E') > 0, 10_000, 'ReadyForQuery');
    expect(messages[0].type).toBe('v');
    const v = messages[0].body;
    expect(v.readInt32BE(0)).toBe(196608);
    expect(v.readInt32BE(4)).toBe(1);
    expect(v.toString('utf8', 8, v.length - 1)).toBe('_pq_.future_feature');
    expect(count('v')).toBe(1);
    expect(messages.find((m) => m.type === 'K')!.body.length).toBe(8);
    s.write(encodeMessage(F.Query, cstr('SELECT 40 + 2')));
    await waitFor(() => count('Z') === 2, 10_000, 'query result');
    const row = messages.find((m) => m.type === 'D')!.body;
    expect(row.toString('utf8', 6)).toBe('42');
    s.destroy();
  });
});

describe('postgres transparency: cancel keys with colliding backend pids', () => {
  it('two targets whose backends share a pid get distinct keys, each mapped to its own backend', async () => {
    const { CancelKeys } = await import('../../proxies/postgres/cancel.ts');
    const keys = new CancelKeys();
    const mk = (host: string) => ({ host, port: 5432, processId: 4242, secretKey: Buffer.from(host), onCancel() {} });
    const one = mk('db-one');
    const two = mk('db-two');
    const k1 = keys.issue(one);
    const k2 = keys.issue(two);
    expect(k1.processId).toBe(4242);
    expect(k2.processId).toBe(4242);
    expect(k1.secretKey.equals(k2.secretKey)).toBe(false);
    expect(keys.find(4242, k1.secretKey)).toBe(one);
    expect(keys.find(4242, k2.secretKey)).toBe(two);
    k1.release();
    expect(keys.find(4242, k1.secretKey)).toBeUndefined();
    expect(keys.find(4242, k2.secretKey)).toBe(two);
  });
});
