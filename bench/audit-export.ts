/**
 * Audit export throughput and memory: write N realistic events through the real writer (64 concurrent
 * sessions' db.query events plus session and auth events, 64 MiB segments), then export them in each
 * format to /dev/null — each export in a fresh child process, so its peak RSS is its own. Prints events/s,
 * peak RSS and heap (sampled every 20 ms and at every read), and heap, external memory and RSS at each quarter of the run: a streaming export holds the same
 * memory at 10^5 and 10^6 events, and the same at the start and the end of a run.
 *
 *   npx tsx bench/audit-export.ts [--events 100000] [--formats jsonl,csv,ocsf]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createEvent, type AuditEvent } from '../src/events/envelope.ts';
import { silentLogger } from '../src/log.ts';
import { openAuditLog } from '../recorder/audit/index.ts';
import { exportAuditLog, type ExportFormat } from '../recorder/export/index.ts';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '100000' },
    formats: { type: 'string', default: 'jsonl,csv,ocsf' },
    child: { type: 'string' },
    dir: { type: 'string' },
  },
});
const N = Number(values.events);
if (!Number.isSafeInteger(N) || N < 1) throw new Error('--events must be a positive whole number');

const SESSIONS = 64;
const sessions = Array.from({ length: SESSIONS }, (_, s) => ({
  actor: Object.freeze({ user: `user${s}`, roles: Object.freeze(['dba', 'oncall']) as string[], cert_serial: `0x${(s * 7919).toString(16)}` }),
  source: Object.freeze({ ip: `10.20.30.${s}`, port: 40000 + s }),
  target: Object.freeze({ name: s % 2 ? 'orders-db' : 'web-1', protocol: s % 2 ? 'postgres' : 'ssh', host: '10.1.2.3', database: s % 2 ? 'orders' : undefined }),
  session_id: `01JDXSESSION${String(s).padStart(14, '0')}`,
}));

function event(i: number): AuditEvent {
  const s = sessions[i % SESSIONS];
  if (i % 50 === 0) return createEvent({ type: 'auth.success', outcome: 'success', ...s, details: { method: 'certificate' } });
  if (s.target.protocol === 'ssh') return createEvent({ type: 'ssh.exec', outcome: 'success', ...s, details: { channel: 0, command: `ls -la /var/log/app-${i % 97}`, exit_status: 0 } });
  return createEvent({
    type: 'db.query',
    outcome: 'success',
    ...s,
    details: { command: 'SELECT', duration_ms: 0.42, params: [String(i), 'open'], protocol: 'extended', rows_returned: i % 40, sql: 'SELECT id, total FROM orders WHERE customer_id = $1 AND status = $2' },
  });
}

async function writeLog(dir: string): Promise<void> {
  const keyFile = path.join(dir, 'audit_signing.key');
  const { privateKey } = crypto.generateKeyPairSync('ed25519');
  fs.writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const log = await openAuditLog(path.join(dir, 'audit'), { signingKeyFile: keyFile, segmentMaxBytes: 64 * 1024 * 1024, checkpointIntervalMs: 1000, checkpointEvery: 1000, log: silentLogger() });
  const ignore = () => {};
  for (let i = 0; i < N; i++) {
    log.appendLater!(event(i), ignore, undefined);
    // Let group commits run now and then, as they would between a gateway's reads.
    if (i % 8192 === 8191) await new Promise((r) => setImmediate(r));
  }
  await log.close();
}

interface ChildResult {
  count: number;
  bytes: number;
  seconds: number;
  maxRssMiB: number;
  peakHeapMiB: number;
  heapAtQuartersMiB: number[];
  rssAtQuartersMiB: number[];
  externalAtQuartersMiB: number[];
}

async function child(dir: string, format: ExportFormat['kind']): Promise<void> {
  const out = fs.createWriteStream('/dev/null');
  const mib = (b: number) => Math.round((b / 1048576) * 10) / 10;
  let peakHeap = 0;
  // Sampled, not getrusage's maxRSS: on Linux a child started by fork+exec inherits the parent's high-water
  // mark at exec, so maxRSS would report the parent that wrote the log.
  let peakRss = 0;
  const quarters: number[] = [];
  const rssQuarters: number[] = [];
  const externalQuarters: number[] = [];
  const sample = () => {
    const m = process.memoryUsage();
    peakHeap = Math.max(peakHeap, m.heapUsed);
    peakRss = Math.max(peakRss, m.rss);
    return m;
  };
  const sampler = setInterval(sample, 20);
  const t0 = performance.now();
  const r = await exportAuditLog(path.join(dir, 'audit'), out, {
    format: { kind: format } as ExportFormat,
    query: { hideCheckpoints: true },
    onProgress: (p) => {
      const m = sample();
      while (quarters.length < 4 && p.bytesRead >= (p.bytesTotal * (quarters.length + 1)) / 4) {
        quarters.push(mib(m.heapUsed));
        rssQuarters.push(mib(m.rss));
        externalQuarters.push(mib(m.external));
      }
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  sample();
  clearInterval(sampler);
  out.end();
  const result: ChildResult = { count: r.count, bytes: r.bytes, seconds, maxRssMiB: mib(peakRss), peakHeapMiB: mib(peakHeap), heapAtQuartersMiB: quarters, rssAtQuartersMiB: rssQuarters, externalAtQuartersMiB: externalQuarters };
  process.stdout.write(JSON.stringify(result) + '\n');
}

async function main(): Promise<void> {
  if (values.child) return child(values.dir!, values.child as ExportFormat['kind']);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-export-'));
  try {
    const t0 = performance.now();
    await writeLog(dir);
    const logBytes = fs.readdirSync(path.join(dir, 'audit')).filter((f) => f.endsWith('.jsonl')).reduce((n, f) => n + fs.statSync(path.join(dir, 'audit', f)).size, 0);
    process.stdout.write(`log: ${N} events, ${(logBytes / 1048576).toFixed(1)} MiB, written in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    for (const format of values.formats!.split(',')) {
      const text = execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--events', String(N), '--child', format, '--dir', dir], { encoding: 'utf8' });
      const r = JSON.parse(text.trim().split('\n').at(-1)!) as ChildResult;
      process.stdout.write(
        `export ${format.padEnd(5)} ${r.count} events, ${(r.bytes / 1048576).toFixed(1)} MiB out: ${Math.round(r.count / r.seconds).toLocaleString('en')} events/s ` +
          `(${r.seconds.toFixed(2)} s); peak RSS ${r.maxRssMiB} MiB, peak heap ${r.peakHeapMiB} MiB, at 25/50/75/100%: heap ${r.heapAtQuartersMiB.join(' / ')} MiB, external ${r.externalAtQuartersMiB.join(' / ')} MiB, RSS ${r.rssAtQuartersMiB.join(' / ')} MiB\n`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
