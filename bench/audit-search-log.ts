/**
 * The synthetic audit log the search bench runs on, written through the real writer (hash chain, signed
 * checkpoints, segment files, group commit) so the index reads exactly what a gateway writes.
 *
 * Shape: sessions of 100 events each (start, 98 actions, end); 1,000 users, 200 targets (half PostgreSQL,
 * half SSH); actions are db.query statements (over 5,000 tables), ssh.exec commands and ssh.sftp paths.
 * Event times are spread evenly over 30 days ending now (one event every ~0.26 s at 10^7), so a time range
 * selects a known fraction of the log.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createEvent, type AuditEvent } from '../src/events/envelope.ts';
import { silentLogger } from '../src/log.ts';
import { openAuditLog } from '../recorder/audit/index.ts';

export const USERS = 1000;
export const TARGETS = 200;
export const PER_SESSION = 100;
export const TABLES = 5000;
export const SPAN_MS = 30 * 86_400_000;

export function sessionId(s: number): string {
  return `01BENCHSESSION${String(s).padStart(12, '0')}`;
}

/** Event i of an n-event log (deterministic). */
export function benchEvent(i: number, n: number, end: number): AuditEvent {
  const s = Math.floor(i / PER_SESSION);
  const k = i % PER_SESSION;
  const t = s % TARGETS;
  const ssh = t % 2 === 1;
  const base = {
    actor: { user: `user${s % USERS}`, roles: ['dba'] },
    source: { ip: `10.0.${(s >> 8) & 255}.${s & 255}`, port: 40000 + (s % 20000) },
    target: ssh ? { name: `target${t}`, protocol: 'ssh', login: 'deploy' } : { name: `target${t}`, protocol: 'postgres', database: 'app' },
    session_id: sessionId(s),
    time: new Date(end - SPAN_MS + Math.floor((i * SPAN_MS) / n)),
  };
  if (k === 0) return createEvent({ ...base, type: 'session.start', outcome: 'success', details: {} });
  if (k === PER_SESSION - 1) return createEvent({ ...base, type: 'session.end', outcome: 'success', details: { reason: 'client_closed' } });
  const table = `orders_${(i * 7919) % TABLES}`;
  if (!ssh) {
    return createEvent({
      ...base,
      type: 'db.query',
      outcome: i % 50 === 0 ? 'failure' : 'success',
      details: { duration_ms: 0.42, params: [String(i)], rows: i % 40, statement: `SELECT id, total FROM ${table} WHERE customer_id = $1` },
    });
  }
  if (k % 3 === 0) return createEvent({ ...base, type: 'ssh.sftp', outcome: 'success', details: { channel: 0, op: 'open', path: `/srv/data/${table}.csv`, result: 'ok' } });
  return createEvent({ ...base, type: 'ssh.exec', outcome: 'success', details: { command: `systemctl status svc-${table}`, exit_status: 0 } });
}

/**
 * Build (or reuse) the n-event log under `cacheDir`: `cacheDir/audit` plus the key pair and a
 * `built.json` marker written last, so an interrupted build is started over rather than reused.
 */
export async function buildBenchLog(cacheDir: string, n: number, progress: (done: number) => void): Promise<{ auditDir: string; publicKeyFile: string; buildSeconds: number; reused: boolean }> {
  const marker = path.join(cacheDir, 'built.json');
  const auditDir = path.join(cacheDir, 'audit');
  const publicKeyFile = path.join(cacheDir, 'audit_signing.pub');
  if (fs.existsSync(marker)) {
    const m = JSON.parse(fs.readFileSync(marker, 'utf8')) as { events: number; buildSeconds: number };
    if (m.events === n) return { auditDir, publicKeyFile, buildSeconds: m.buildSeconds, reused: true };
  }
  fs.rmSync(cacheDir, { recursive: true, force: true });
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const keyFile = path.join(cacheDir, 'audit_signing.key');
  fs.writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  fs.writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }));
  const t0 = performance.now();
  const log = await openAuditLog(auditDir, { signingKeyFile: keyFile, segmentMaxBytes: 64 * 1024 * 1024, checkpointIntervalMs: 1000, checkpointEvery: 1000, log: silentLogger() });
  const end = Date.now();
  const ignore = () => {};
  const WINDOW = 8192;
  let previous: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < n; ) {
    const stop = Math.min(n, i + WINDOW);
    for (; i < stop; i++) log.appendLater!(benchEvent(i, n, end), ignore, undefined);
    const committed = log.checkpoint();
    await new Promise<void>((r) => setImmediate(r));
    await previous;
    previous = committed;
    if (i % (WINDOW * 64) < WINDOW) progress(i);
  }
  await previous;
  await log.close();
  const buildSeconds = (performance.now() - t0) / 1000;
  fs.writeFileSync(marker, JSON.stringify({ events: n, buildSeconds, end }));
  return { auditDir, publicKeyFile, buildSeconds, reused: false };
}
