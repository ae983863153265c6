import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { startTestGateway, type IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess } from '../support/gateway-process.ts';
import { tempDir, secretsDir, waitFor } from '../support/tmp.ts';
import { enableGeneralLog, readGeneralLog, countMissing, tailCheck } from './general-log.ts';
import { sysbench, sysbenchCertDir } from './sysbench.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';

/**
 * kill -9 of the gateway (a child process) under sysbench load, five times per durability mode, with
 * MariaDB's general log as the oracle. Strict: every statement the server ran has its durable intent in
 * the audit log (0 missing). Batched: records not yet committed may be lost; the number is reported and
 * must not exceed what the server ran in the crash window — its last two general-log seconds, the
 * finest the log's timestamps allow (a weak bound for runs of a few seconds; the counts are printed).
 */
const PASSWORD = 'crash-pw';
let db: MariadbHandle;
let base: string;
let alice: IssuedFiles;
let generalLog: string;
let config: Record<string, unknown>;

beforeAll(async () => {
  db = await startMariadb();
  await db.query(`CREATE DATABASE sbtest; CREATE USER native_user@'%' IDENTIFIED BY '${PASSWORD}'; GRANT ALL ON *.* TO native_user@'%';`);
  // The table is prepared directly on the server: only the load runs through vigil.
  await sysbench({ test: 'oltp_read_write', command: 'prepare', port: db.port, user: 'native_user', password: PASSWORD, db: 'sbtest', tableSize: 1000 });
  generalLog = await enableGeneralLog(db);
  base = tempDir('vigil-crash-');
  const secret = secretsDir(base);
  config = {
    targets: [{ name: 'db', protocol: 'mysql', host: '127.0.0.1', port: db.port, user: 'native_user', password: { file: secret('native', PASSWORD) } }],
    roles: [{ name: 'dba', targets: ['db'], databases: ['*'] }],
  };
  // An in-process gateway creates the CA in the shared data dir and issues the credentials.
  const tg = await startTestGateway(config, base);
  alice = await tg.issue({ user: 'alice', roles: ['dba'] });
  await tg.stop();
}, 120_000);
afterAll(async () => {
  await db?.stop();
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

/** sysbench oltp_read_write through the gateway until it is killed (it then fails: connection lost). */
function load(port: number, certDir: string) {
  const args = ['oltp_read_write', '--db-driver=mysql', '--mysql-host=127.0.0.1', `--mysql-port=${port}`, '--mysql-user=db', '--mysql-password=', '--mysql-db=sbtest', '--threads=4', '--time=60', '--table-size=1000', '--tables=1', '--mysql-ssl=on', '--mysql-ignore-errors=all', 'run'];
  const c = spawn('sysbench', args, { cwd: certDir, stdio: 'ignore' });
  const exited = new Promise<void>((r) => c.on('exit', () => r()));
  return { exited, kill: () => c.kill('SIGKILL') };
}

describe('kill -9 of the gateway under sysbench load', () => {
  for (const durability of ['strict', 'batched'] as const) {
    it(`${durability}: five crashes, general log as the oracle`, async () => {
      const certDir = sysbenchCertDir(alice, base);
      const auditDir = path.join(base, 'data', 'audit');
      const totals = { backend: 0, events: 0, missing: 0 };
      for (let round = 1; round <= 5; round++) {
        const logFrom = readGeneralLog(generalLog).length;
        const auditFrom = fs.existsSync(auditDir) ? (await searchAuditLog(auditDir, {})).records.length : 0;
        const gw = await startGatewayProcess({ ...config, audit: { durability } }, base);
        const sb = load(gw.ports.mysql!, certDir);
        // Let the load run, then crash the gateway. Batched runs longer (a few seconds) so that "the last
        // second" the losses must fall within is a small part of the run.
        const enough = durability === 'strict' ? 300 : 1500;
        await waitFor(() => readGeneralLog(generalLog).length - logFrom > enough, 30_000, 'load through the gateway');
        await gw.kill('SIGKILL');
        await Promise.race([sb.exited, new Promise((r) => setTimeout(r, 5000))]);
        sb.kill();
        await new Promise((r) => setTimeout(r, 300));
        const lines = readGeneralLog(generalLog).slice(logFrom);
        const threads = new Set(lines.filter((l) => l.command === 'Connect' && l.text.startsWith('native_user@')).map((l) => l.id));
        const records = (await searchAuditLog(auditDir, {})).records.slice(auditFrom).map((r) => r.event);
        // Strict: the durable intent (db.query.start) of each statement; batched: its db.query record.
        // vigil's own session queries (db.session_query) reach the server too: strict writes their intent first.
        const isIntent = (e: (typeof records)[number]) => (e.details as { intent?: boolean }).intent === true;
        const events = records.filter((e) =>
          durability === 'strict'
            ? e.type === 'db.query.start' || (e.type === 'db.session_query' && isIntent(e))
            : e.type === 'db.query' || (e.type === 'db.session_query' && !isIntent(e)),
        );
        const r = countMissing(lines, threads, events);
        console.log(`${durability} crash ${round}: backend ${r.backend} statements, vigil ${r.events} records, missing ${r.missing} (server ran ${r.lastWindow} in its last two log seconds)`);
        expect(r.backend).toBeGreaterThan(0);
        if (durability === 'strict') expect(r.missing).toBe(0);
        else {
          expect(r.missing).toBeLessThanOrEqual(r.lastWindow);
          // Within the window: on every connection, only its last statements lack a record (no holes).
          const tail = tailCheck(lines, threads, records);
          console.log(`batched crash ${round}: ${tail.lost} statements lost at the tails of ${threads.size} connections`);
          expect(tail.violations).toEqual([]);
          expect(tail.lost).toBe(r.missing);
        }
        totals.backend += r.backend;
        totals.events += r.events;
        totals.missing += r.missing;
      }
      console.log(`${durability} total over 5 crashes: ${JSON.stringify(totals)}`);
    }, 120_000);
  }
});
