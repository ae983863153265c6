import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog, verifyAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { makeSigningKey, auditOptions } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Run the crash writer, collect acknowledged appends, SIGKILL it once `after` acks were seen. */
async function runAndKill(dir: string, keyFile: string, after: number): Promise<Map<number, string>> {
  // node --import tsx (not the tsx wrapper, which would run the writer in a grandchild SIGKILL misses)
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fixtures/crash-writer.ts'), dir, keyFile], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acked = new Map<number, string>();
  let buf = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      const m = /^ack (\d+) (\S+)$/.exec(l);
      if (!m) continue;
      acked.set(Number(m[1]), m[2]);
      if (acked.size === after) child.kill('SIGKILL');
    }
  });
  const sig = await exited;
  expect(sig, `writer should be killed, stderr: ${stderr}`).toBe('SIGKILL');
  return acked;
}

describe('audit log crash safety', () => {
  it('kill -9 mid-stream: the reopened writer continues the chain, verify passes, every acknowledged event is present', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const acked = await runAndKill(dir, key.keyFile, 3000);
    expect(acked.size).toBeGreaterThanOrEqual(3000);

    // Before recovery the log cannot prove its tail (no checkpoint after the last records, maybe a torn line).
    const before = verifyAuditLog(dir, key.publicPem);
    if (!before.ok) expect(['uncovered-tail', 'torn-tail']).toContain(before.firstBad!.kind);

    // Reopen: recovery seals the tail with a checkpoint and the chain continues after the last complete record.
    const w = await openAuditLog(dir, auditOptions(key.keyFile));
    const lastBefore = w.head.seq;
    const more = await w.append((await import('./helpers.ts')).sampleEvent(1));
    expect(more.seq).toBe(lastBefore + 1);
    await w.close();

    const after = verifyAuditLog(dir, key.publicPem);
    expect(after.firstBad).toBeUndefined();
    expect(after.ok).toBe(true);

    const { records } = await searchAuditLog(dir, {});
    const bySeq = new Map(records.map((r) => [r.seq, r.event.id]));
    for (const [seq, id] of acked) expect(bySeq.get(seq), `acknowledged seq ${seq}`).toBe(id);
    // A torn tail, if any, was quarantined rather than silently dropped.
    const quarantine = path.join(dir, 'quarantine');
    if (fs.existsSync(quarantine)) {
      const cp = records.filter((r) => r.event.type === 'audit.checkpoint' && r.event.details.reason === 'recover');
      expect(cp.length).toBe(1);
    }
  });

  it('a crash-torn final line is reported distinctly, then set aside on reopen', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const w = await openAuditLog(dir, auditOptions(key.keyFile));
    const { sampleEvent } = await import('./helpers.ts');
    for (let i = 0; i < 10; i++) await w.append(sampleEvent(i));
    await w.close();
    const seg = fs.readdirSync(dir).find((f) => f.endsWith('.jsonl'))!;
    // A write that died half way: part of a record line, no newline.
    fs.appendFileSync(path.join(dir, seg), '{"seq":12,"prev":"abc');
    const torn = verifyAuditLog(dir, key.publicPem);
    expect(torn.ok).toBe(false);
    expect(torn.firstBad).toMatchObject({ kind: 'torn-tail', segment: seg, seq: 12 });

    const w2 = await openAuditLog(dir, auditOptions(key.keyFile));
    await w2.close();
    expect(verifyAuditLog(dir, key.publicPem).ok).toBe(true);
    const q = fs.readdirSync(path.join(dir, 'quarantine'));
    expect(q).toHaveLength(1);
    expect(fs.readFileSync(path.join(dir, 'quarantine', q[0]), 'utf8')).toBe('{"seq":12,"prev":"abc');
    const { records } = await searchAuditLog(dir, { type: 'audit.checkpoint' });
    expect(records.at(-1)!.event.details).toMatchObject({ reason: 'recover', torn_bytes: 21 });
  });

  it('sessions left open by a crash get session.end gateway_crash at reopen, found through the seal of the segment before', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const { sampleEvent } = await import('./helpers.ts');
    const session = (type: 'session.start' | 'session.end', id: string) =>
      sampleEvent(0, { type, session_id: id, details: type === 'session.end' ? { reason: 'client_closed' } : {} });
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { segmentMaxBytes: 2048 }));
    await w.append(session('session.start', 'left-open'));
    await w.append(session('session.start', 'closed'));
    // Several rotations: the open set travels in each seal.
    for (let i = 0; i < 40; i++) await w.append(sampleEvent(i, { session_id: 'other' }));
    await w.append(session('session.end', 'closed'));
    await w.append(session('session.start', 'left-open-2'));
    expect(fs.readdirSync(dir).filter((f) => f.endsWith('.jsonl')).length).toBeGreaterThan(3);
    // The state a kill -9 leaves: copy the live directory, drop the lock (its holder is gone).
    const crashed = path.join(base, 'crashed');
    fs.cpSync(dir, crashed, { recursive: true });
    fs.rmSync(path.join(crashed, 'writer.lock'));
    await w.append(session('session.end', 'left-open'));
    await w.append(session('session.end', 'left-open-2'));
    await w.close();

    const w2 = await openAuditLog(crashed, auditOptions(key.keyFile));
    await w2.close();
    const { records } = await searchAuditLog(crashed, { type: 'session.end' });
    const ends = records.map((r) => [r.event.session_id, r.event.details.reason]);
    expect(ends.sort()).toEqual([['closed', 'client_closed'], ['left-open', 'gateway_crash'], ['left-open-2', 'gateway_crash']]);
    expect(verifyAuditLog(crashed, key.publicPem).firstBad).toBeUndefined();
    // A clean close left nothing open: reopening the original adds no session.end.
    const w3 = await openAuditLog(dir, auditOptions(key.keyFile));
    await w3.close();
    expect((await searchAuditLog(dir, { type: 'session.end' })).records.map((r) => r.event.details.reason)).toEqual(['client_closed', 'client_closed', 'client_closed']);
  });
});
