/**
 * Cost of audit.durability strict vs batched: N concurrent "sessions", each in a loop doing what a proxy
 * does per statement — EventBus.beforeForward(db.query.start) (strict: await it before "forwarding";
 * batched: returns at once) and then EventBus.record(db.query) when the statement "completes" — against
 * the real writer (hash chain, signed checkpoints, O_DSYNC group commits) in a temp dir.
 *
 * Prints, per variant, medians over the rounds: events/s, fsyncs (group commits) per event, and for strict
 * the beforeForward wait (p50/p99); plus the load average before and after (the machine is shared).
 *
 *   npm run bench:audit-durability [-- --sessions 64 --seconds 3 --rounds 3 --dir /path/on/the/real/disk]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { silentLogger } from '../src/log.ts';
import { EventBus, type Durability } from '../src/events/bus.ts';
import type { EventInput } from '../src/events/envelope.ts';
import { openAuditLog } from '../recorder/audit/index.ts';
import { commitChannel, type CommitMessage } from '../recorder/audit/writer.ts';
import { median } from './stats.ts';

const { values } = parseArgs({
  options: {
    sessions: { type: 'string', default: '64' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string' },
  },
});
const SESSIONS = Number(values.sessions);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);

interface Variant {
  name: string;
  durability: Durability;
  strictWindowMs: number;
}
const VARIANTS: Variant[] = [
  { name: 'strict (strict_commit_window 0)', durability: 'strict', strictWindowMs: 0 },
  { name: 'strict (strict_commit_window 1ms)', durability: 'strict', strictWindowMs: 1 },
  // What strict cost before it had its own window: the 5 ms commit window of awaited decisions.
  { name: 'strict (old: commit_window 5ms)', durability: 'strict', strictWindowMs: 5 },
  { name: 'batched', durability: 'batched', strictWindowMs: 0 },
];

function sessionBase(s: number) {
  return {
    actor: Object.freeze({ user: `user${s}`, roles: Object.freeze(['dba']) as string[] }),
    source: Object.freeze({ ip: `10.20.30.${s % 250}`, port: 40000 + s }),
    target: Object.freeze({ name: 'orders-db', protocol: 'postgres', host: '10.1.2.3', database: 'orders' }),
    session_id: `01JDXSESSION${String(s).padStart(14, '0')}`,
  };
}

async function round(v: Variant, base: string): Promise<{ eventsPerSec: number; fsyncsPerEvent: number; waitP50: number; waitP99: number }> {
  const dir = fs.mkdtempSync(path.join(base, 'dur-'));
  const keyFile = path.join(dir, 'audit_signing.key');
  fs.writeFileSync(keyFile, crypto.generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const w = await openAuditLog(path.join(dir, 'audit'), {
    signingKeyFile: keyFile, segmentMaxBytes: 64 * 1024 * 1024, checkpointIntervalMs: 1000, checkpointEvery: 1000,
    commitWindowMs: 5, backgroundWindowMs: 25, strictWindowMs: v.strictWindowMs, log: silentLogger(),
  });
  const bus = new EventBus(w, v.durability);
  let commits = 0;
  const onCommit = (m: unknown) => void ((m as CommitMessage).phase === 'durable' && commits++);
  commitChannel.subscribe(onCommit);
  let events = 0;
  const waits: number[] = [];
  const stopAt = performance.now() + SECONDS * 1000;
  const fail = (e: Error) => {
    throw e;
  };
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, s) => {
      const b = sessionBase(s);
      for (let i = 0; performance.now() < stopAt; i++) {
        const sql = `SELECT * FROM orders WHERE id = $1 /* ${s}.${i} */`;
        const start: EventInput = { type: 'db.query.start', outcome: 'unknown', ...b, details: { sql } };
        const t0 = performance.now();
        const pending = bus.beforeForward(start, fail);
        if (pending) {
          await pending;
          waits.push(performance.now() - t0);
        }
        bus.record({ type: 'db.query', outcome: 'success', ...b, details: { sql, rows_returned: 1, duration_ms: 0.1 } }, fail);
        events += 2;
        // A statement's round trip to the backend: let the others run (batched would otherwise never yield).
        await new Promise<void>((r) => setImmediate(r));
      }
    }),
  );
  const elapsed = performance.now() - (stopAt - SECONDS * 1000);
  await w.close();
  commitChannel.unsubscribe(onCommit);
  fs.rmSync(dir, { recursive: true, force: true });
  waits.sort((a, b) => a - b);
  const q = (p: number) => (waits.length ? waits[Math.min(waits.length - 1, Math.floor(p * waits.length))] : 0);
  return { eventsPerSec: events / (elapsed / 1000), fsyncsPerEvent: commits / events, waitP50: q(0.5), waitP99: q(0.99) };
}

const base = values.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-'));
const loadBefore = os.loadavg();
const results = new Map<string, Awaited<ReturnType<typeof round>>[]>();
for (let r = 0; r < ROUNDS; r++) {
  for (const v of VARIANTS) {
    const res = await round(v, base);
    (results.get(v.name) ?? results.set(v.name, []).get(v.name)!).push(res);
  }
}
const loadAfter = os.loadavg();
console.log(`audit durability: ${SESSIONS} sessions, ${SECONDS} s per round, median of ${ROUNDS} rounds, dir ${base} (${os.cpus().length} cpus)`);
console.log(`load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')}`);
for (const v of VARIANTS) {
  const rs = results.get(v.name)!;
  const m = (f: (x: (typeof rs)[number]) => number) => median(rs.map(f));
  console.log(
    `${v.name.padEnd(36)} ${m((x) => x.eventsPerSec).toFixed(0).padStart(8)} events/s  ${m((x) => x.fsyncsPerEvent).toFixed(4)} fsyncs/event` +
      (v.durability === 'strict' ? `  beforeForward wait p50 ${m((x) => x.waitP50).toFixed(2)} ms, p99 ${m((x) => x.waitP99).toFixed(2)} ms` : ''),
  );
}
if (!values.dir) fs.rmSync(base, { recursive: true, force: true });
