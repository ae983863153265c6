/**
 * Access-review report cost against its baseline: write N realistic events through the real writer (64
 * sessions: db.query statements — reads, DML, DDL, some distinct texts — ssh commands, session and auth
 * events), then in alternating rounds run a JSONL export of the period to /dev/null (the baseline: read
 * and parse every event) and build the report model (read, parse, classify every statement, verify the
 * chain). Prints the medians (and the verification's share), the ratio report/export and the load average.
 *
 *   npx tsx bench/report.ts [--events 200000] [--rounds 3] [--distinct 500]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { createEvent, type AuditEvent } from '../src/events/envelope.ts';
import { silentLogger } from '../src/log.ts';
import { openStateStore } from '../src/store/index.ts';
import { openAuditLog } from '../recorder/audit/index.ts';
import { exportAuditLog } from '../recorder/export/index.ts';
import { collectReport, verificationSummary } from '../recorder/reports/index.ts';
import { median } from './stats.ts';

const { values } = parseArgs({ options: { events: { type: 'string', default: '200000' }, rounds: { type: 'string', default: '3' }, distinct: { type: 'string', default: '500' } } });
const N = Number(values.events);
const ROUNDS = Number(values.rounds);
const DISTINCT = Number(values.distinct);

const SESSIONS = 64;
const sessions = Array.from({ length: SESSIONS }, (_, s) => ({
  actor: Object.freeze({ user: `user${s % 16}`, roles: ['dba'], cert_serial: `0x${(s * 7919).toString(16)}` }),
  source: Object.freeze({ ip: `10.20.30.${s}`, port: 40000 + s }),
  target: Object.freeze(s % 3 === 0 ? { name: 'web-1', protocol: 'ssh', host: '10.1.2.3' } : s % 3 === 1 ? { name: 'orders-db', protocol: 'postgres', host: '10.1.2.4', database: 'orders' } : { name: 'shop-db', protocol: 'mysql', host: '10.1.2.5', database: 'shop' }),
  session_id: `01JDXSESSION${String(s).padStart(14, '0')}`,
}));

/** Statement texts: mostly reads, some writes and schema changes, `DISTINCT` different texts in all. */
function sql(i: number): string {
  const k = i % DISTINCT;
  if (k % 10 === 0) return `UPDATE orders SET status = 'shipped' WHERE id = ${k}`;
  if (k % 50 === 1) return `ALTER TABLE orders_${k} ADD COLUMN note text`;
  return `SELECT id, total FROM orders WHERE customer_id = ${k} AND status = 'open'`;
}

function event(i: number): AuditEvent {
  const s = sessions[i % SESSIONS];
  if (i < SESSIONS) return createEvent({ type: 'session.start', outcome: 'success', ...s, details: { grant_ids: [] } });
  if (i % 50 === 0) return createEvent({ type: 'auth.failure', outcome: 'failure', ...s, details: { reason: 'no_permission' } });
  if (s.target.protocol === 'ssh') return createEvent({ type: 'ssh.exec', outcome: 'success', ...s, details: { channel: 0, command: i % 20 === 0 ? `systemctl restart app-${i % 7}` : `ls -la /var/log/app-${i % 97}`, exit_status: 0 } });
  return createEvent({ type: 'db.query', outcome: 'success', ...s, details: { command: 'SELECT', duration_ms: 0.42, [s.target.protocol === 'postgres' ? 'sql' : 'query']: sql(i), rows_returned: i % 40 } });
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-report-'));
  try {
    const keyFile = path.join(dir, 'audit_signing.key');
    const pubFile = path.join(dir, 'audit_signing.pub');
    const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
    fs.writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    fs.writeFileSync(pubFile, publicKey.export({ type: 'spki', format: 'pem' }));
    const auditDir = path.join(dir, 'audit');
    const since = new Date(Date.now() - 60_000);
    const log = await openAuditLog(auditDir, { signingKeyFile: keyFile, segmentMaxBytes: 64 * 1024 * 1024, checkpointIntervalMs: 1000, checkpointEvery: 1000, log: silentLogger() });
    for (let i = 0; i < N; i++) {
      log.appendLater!(event(i), () => {}, undefined);
      if (i % 8192 === 8191) await new Promise((r) => setImmediate(r));
    }
    await log.close();
    const until = new Date(Date.now() + 60_000);
    const store = await openStateStore(dir);
    const exportTimes: number[] = [];
    const reportTimes: number[] = [];
    const verifyTimes: number[] = [];
    let model;
    for (let r = 0; r < ROUNDS; r++) {
      let t = performance.now();
      await exportAuditLog(auditDir, fs.createWriteStream('/dev/null'), { format: { kind: 'jsonl' }, query: { since, until, hideCheckpoints: true } });
      exportTimes.push((performance.now() - t) / 1000);
      t = performance.now();
      model = await collectReport({ auditDir, publicKeyFile: pubFile, store }, { since: since.toISOString(), until: until.toISOString() });
      reportTimes.push((performance.now() - t) / 1000);
      t = performance.now();
      await verificationSummary(auditDir, pubFile);
      verifyTimes.push((performance.now() - t) / 1000);
    }
    await store.close();
    const e = median(exportTimes);
    const rep = median(reportTimes);
    process.stdout.write(
      `log: ${N} events (${DISTINCT} distinct statement texts); report: ${model!.summary.changes} changes, chain ${model!.verification.status}\n` +
        `jsonl export (baseline): median ${e.toFixed(2)} s (${Math.round(N / e).toLocaleString('en')} events/s)\n` +
        `report model:            median ${rep.toFixed(2)} s (${Math.round(N / rep).toLocaleString('en')} events/s), of which chain verification ~${median(verifyTimes).toFixed(2)} s\n` +
        `ratio report/export: ${(rep / e).toFixed(2)} over ${ROUNDS} rounds; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} on ${os.cpus().length} cores\n`,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
