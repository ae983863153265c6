import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { buildReportModel, type ReportModel } from '../../recorder/reports/model.ts';
import { loadSqlParsers } from '../../recorder/reports/classify-sql.ts';

/**
 * Only executions are statements and changes, against real drivers through the gateway: mysql2's execute()
 * (COM_STMT_PREPARE, COM_STMT_EXECUTE, then COM_STMT_CLOSE, each recorded with the text), node-postgres with
 * parameters (Parse/Bind/Execute), SQL PREPARE/EXECUTE on both, a server variable set by its @@global name,
 * and over ssh a change inside `sh -c` and inline Python. Before, the one DELETE run by mysql2 was three
 * changes and three statements, and the EXECUTE of a prepared DELETE no change at all.
 */

let sshd: SshdHandle;
let pgServer: PostgresHandle;
let maria: MariadbHandle;
let tg: TestGateway;
let base: string;
let alice: IssuedFiles;
let knownHosts: string;
let model: ReportModel;
const MYSQL_PASSWORD = 'report-exec-pass';
const MY_DELETE = 'DELETE FROM rx.t WHERE a = ?';
const PG_DELETE = 'DELETE FROM report_exec WHERE a = $1';
const SSH_FILE = `/tmp/vigil-report-exec-${process.pid}.txt`;

beforeAll(async () => {
  [sshd, pgServer, maria] = await Promise.all([startSshd(), startPostgres(), startMariadb()]);
  await maria.query(`CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '${MYSQL_PASSWORD}'; GRANT ALL ON *.* TO 'app'@'127.0.0.1'; CREATE DATABASE rx; CREATE TABLE rx.t (a int); INSERT INTO rx.t VALUES (1), (2)`);
  base = tempDir('vigil-report-exec-');
  const secret = path.join(base, 'mysql.pass');
  fs.writeFileSync(secret, MYSQL_PASSWORD, { mode: 0o600 });
  tg = await startTestGateway({
    targets: [
      { name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
      { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pgServer.port, database: 'app', user: 'trust_user' },
      { name: 'my', protocol: 'mysql', host: '127.0.0.1', port: maria.port, user: 'app', password: { file: secret } },
    ],
    roles: [{ name: 'dba', targets: ['web', 'pg', 'my'], databases: ['*'], logins: ['*'] }],
  }, base);
  alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
  await loadSqlParsers();
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await Promise.all([sshd?.stop(), pgServer?.stop(), maria?.stop()]);
  if (base) fs.rmSync(base, { recursive: true, force: true });
  fs.rmSync(SSH_FILE, { force: true });
});

function ssh(command: string): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn('ssh', [
      '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${alice.sshKey}`, '-o', `CertificateFile=${alice.sshCert}`, '-o', 'IdentitiesOnly=yes',
      '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
      'web@127.0.0.1', command,
    ], { stdio: 'ignore', env: clientEnv() });
    child.on('close', resolve);
  });
}

const tls = (who: IssuedFiles) => ({ ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key) });

describe('access report: executions, not the messages around them, are statements and changes', () => {
  it('real sessions: mysql2 execute(), node-postgres with parameters, SQL PREPARE/EXECUTE, @@global, sh -c, python -c', async () => {
    const my = await mysql.createConnection({ host: '127.0.0.1', port: tg.ports.mysql, user: 'my', ssl: tls(alice) });
    await my.execute(MY_DELETE, [1]);
    await my.unprepare(MY_DELETE);
    await my.query("PREPARE s FROM 'UPDATE rx.t SET a = 3'");
    await my.query('EXECUTE s');
    await my.query('SET @@global.max_connections = @@global.max_connections');
    await my.ping();
    await my.end();

    const client = new pg.Client({ host: '127.0.0.1', port: tg.ports.postgres, database: 'pg', user: 'alice', ssl: { ...tls(alice), servername: 'localhost' } });
    await client.connect();
    await client.query('CREATE TABLE report_exec (a int)');
    await client.query(PG_DELETE, [1]);
    await client.query('PREPARE d AS DELETE FROM report_exec');
    await client.query('EXECUTE d');
    await client.end();

    expect(await ssh(`sh -c 'echo changed > ${SSH_FILE}'`)).toBe(0);
    expect(await ssh("python3 -c 'print(1)'")).toBe(0);

    await waitFor(() => {
      const started = tg.events.filter((e) => e.type === 'session.start').map((e) => e.session_id);
      const ended = new Set(tg.events.filter((e) => e.type === 'session.end').map((e) => e.session_id));
      return started.length === 4 && started.every((s) => ended.has(s)) ? true : undefined;
    }, 20_000, 'every session ended');

    // What the proxies recorded: the one mysql2 DELETE as prepare, execute and close, each with its text.
    const myDelete = tg.events.filter((e) => e.type === 'db.query' && e.details.query === MY_DELETE).map((e) => e.details.command);
    expect(myDelete).toEqual(['COM_STMT_PREPARE', 'COM_STMT_EXECUTE', 'COM_STMT_CLOSE']);
    // Queries vigil ran itself on the session are recorded apart.
    expect(tg.events.some((e) => e.type === 'db.session_query' && e.target.name === 'my')).toBe(true);

    model = await buildReportModel({
      period: { since: new Date(Date.now() - 3_600_000).toISOString(), until: new Date(Date.now() + 60_000).toISOString() },
      now: new Date(),
      events: tg.events,
      access: [], certs: [], revocations: [],
      verification: { status: 'complete', ok: true, records: 0, segments: 0, checkpoints: 0, last_seq: 0 },
    });
    const changes = (target: string) => model.changes.filter((c) => c.target === target).map((c) => [c.text, c.class]);
    expect(changes('my')).toEqual([
      [MY_DELETE, 'dml'],
      ['EXECUTE s', 'dml'],
      ['SET @@global.max_connections = @@global.max_connections', 'config'],
    ]);
    expect(changes('pg')).toEqual([
      ['CREATE TABLE report_exec (a int)', 'ddl'],
      [PG_DELETE, 'dml'],
      ['EXECUTE d', 'dml'],
    ]);
    expect(changes('web')).toEqual([[`sh -c 'echo changed > ${SSH_FILE}'`, 'file']]);
    expect(model.unclassified.map((u) => [u.target, u.channel, u.text])).toEqual([['web', 'ssh', "python3 -c 'print(1)'"]]);
    // Statements: the executions only (no prepare, close or ping; no PREPARE; no query of vigil's own).
    const statements = Object.fromEntries(model.sessions.per_person_target.map((r) => [r.target, r.statements]));
    expect(statements).toEqual({ my: 3, pg: 3, web: 0 });
  }, 120_000);
});
