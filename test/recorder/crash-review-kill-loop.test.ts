import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog, verifyAuditLog, searchAuditLog, HEAD_FILE } from '../../recorder/audit/index.ts';
import { makeSigningKey, auditOptions } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const ITERATIONS = 20;

interface Ack { seq: number; id: string; type: string; session: string }

/**
 * Run the writer child and SIGKILL it at a random moment: sometimes while it is still recovering the
 * previous kill (before "ready"), mostly 0-50 ms into its burst of appends (segments of 6 KiB, a
 * checkpoint every 7 records: the kill lands in seals, rotations and checkpoint/head.json writes).
 */
async function runAndKill(dir: string, keyFile: string, tag: string, duringStartup: boolean): Promise<Ack[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'fixtures/crash-review-writer.ts'), dir, keyFile, tag], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const acks: Ack[] = [];
  let buf = '';
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => child.on('exit', (code, sig) => resolve(sig ?? code)));
  const kill = () => child.kill('SIGKILL');
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      if (l.startsWith('ready') && !duringStartup) setTimeout(kill, Math.random() * 50);
      const m = /^ack (\d+) (\S+) (\S+) (\S+)$/.exec(l);
      if (m) acks.push({ seq: Number(m[1]), id: m[2], type: m[3], session: m[4] });
    }
  });
  // Startup (tsx, key, recovery) takes a few hundred ms: a kill somewhere inside it.
  if (duringStartup) setTimeout(kill, 150 + Math.random() * 600);
  const how = await exited;
  expect(how, `writer should be killed, stderr: ${stderr}`).toBe('SIGKILL');
  return acks;
}

describe('audit writer: SIGKILL at many moments, restart after each', () => {
  it(`${ITERATIONS} kills: every acknowledged record survives, the chain verifies, open sessions end once`, async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const acked: Ack[] = [];
    for (let i = 0; i < ITERATIONS; i++) {
      const acks = await runAndKill(dir, key.keyFile, `k${i}`, i % 4 === 3);
      acked.push(...acks);
      // Before recovery the log may end unsealed or torn, never tampered. (A log killed before its very
      // first checkpoint has nothing signed yet: verify says no-checkpoint, which the restart fixes.)
      const before = verifyAuditLog(dir, key.publicPem);
      if (!before.ok && before.firstBad?.kind !== 'no-checkpoint') expect(before.status, JSON.stringify(before.firstBad)).toBe('unsealed-tail');
    }
    // Recover once more in-process and close cleanly.
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { segmentMaxBytes: 6 * 1024 }));
    await w.close();

    const verified = verifyAuditLog(dir, key.publicPem);
    expect(verified.firstBad).toBeUndefined();
    expect(verified.ok).toBe(true);

    const { records } = await searchAuditLog(dir, {});
    // No duplicate and no missing seq (verify checked every link, across the restarts too).
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));

    // Every acknowledged append is present, at its seq.
    const bySeq = new Map(records.map((r) => [r.seq, r.event.id]));
    for (const a of acked) expect(bySeq.get(a.seq), `acknowledged ${a.type} seq ${a.seq}`).toBe(a.id);
    // The loop did real work (on a loaded machine a burst acknowledges fewer records before its kill).
    expect(acked.length).toBeGreaterThan(ITERATIONS);

    // Every session whose start is in the chain has exactly one session.end.
    const starts = new Set<string>();
    const ends = new Map<string, string[]>();
    for (const { event: e } of records) {
      if (e.type === 'session.start') starts.add(e.session_id!);
      if (e.type === 'session.end') ends.set(e.session_id!, [...(ends.get(e.session_id!) ?? []), String(e.details.reason)]);
    }
    for (const s of starts) expect(ends.get(s)?.length, `session.end of ${s}: ${ends.get(s)}`).toBe(1);
    for (const s of ends.keys()) expect(starts.has(s), `end without start ${s}`).toBe(true);
    expect([...ends.values()].flat()).toContain('gateway_crash');

    const quarantined = fs.existsSync(path.join(dir, 'quarantine')) ? fs.readdirSync(path.join(dir, 'quarantine')).length : 0;
    console.log(`records ${records.length}, segments ${verified.segments}, acknowledged ${acked.length}, torn tails set aside ${quarantined}`);
    // head.json names a checkpointed record of the chain.
    const head = JSON.parse(fs.readFileSync(path.join(dir, HEAD_FILE), 'utf8')) as { seq: number; head: string };
    expect(records.find((r) => r.seq === head.seq)?.hash).toBe(head.head);
  }, 120_000);
});
