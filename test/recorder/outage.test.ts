import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { describe, it, expect, afterEach } from 'vitest';
import { tempDir, waitFor } from '../support/tmp.ts';
import { openAuditLog, verifyAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { createEvent } from '../../src/events/envelope.ts';
import { segmentName } from '../../recorder/audit/record.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

const isRoot = process.getuid?.() === 0;
const mounts: string[] = [];
afterEach(() => {
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
});

/** A 1 MiB tmpfs: a real file system that fills up. */
function smallFs(): string {
  const dir = tempDir('vigil-tmpfs-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

/** Fill a file system completely; returns the filler file (delete it to free the space). */
function fill(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(4096, 1);
  try {
    for (;;) fs.writeSync(fd, block);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  }
  // The last partial block too: nothing at all is left.
  try {
    for (;;) fs.writeSync(fd, block, 0, 1);
  } catch {
    // ENOSPC
  }
  fs.closeSync(fd);
  return file;
}

const sessionEvent = (type: 'session.start' | 'session.end', id: string) =>
  createEvent({
    type,
    outcome: 'success',
    actor: { user: 'alice', roles: ['dba'] },
    source: { ip: '10.0.0.7', port: 5000 },
    target: { name: 'orders-db', protocol: 'postgres' },
    session_id: id,
    details: type === 'session.end' ? { reason: 'audit_unavailable' } : {},
  });

describe('audit log outage and recovery without restart', () => {
  it.skipIf(!isRoot)('disk full on a real (tmpfs, 1 MiB) file system: refuses, then recovers by itself with an audit.outage event', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const fsDir = smallFs();
    const dir = path.join(fsDir, 'audit');
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { recoveryProbeMs: 50, checkpointIntervalMs: 100 }));
    await w.append(sessionEvent('session.start', 'sess-open'));
    let acknowledged = 0;
    for (let i = 0; i < 20; i++) acknowledged = (await w.append(sampleEvent(i))).seq;
    // The last record acknowledged, not w.head: the 100 ms checkpoint timer may have assigned a checkpoint
    // not yet written, which the disk-full cut-back then drops (the outage event takes its seq).
    const durableBefore = acknowledged;

    const filler = fill(fsDir);
    // Fire-and-forget events queued when the write fails are refused through their callback (their
    // sessions end); awaited ones reject. Neither is in the log afterwards.
    const laterErrors: (Error | undefined)[] = [];
    for (let i = 0; i < 50; i++) w.appendLater!(sampleEvent(100 + i, { session_id: 'sess-refused' }), (err) => laterErrors.push(err), undefined);
    await expect(w.append(sampleEvent(200, { session_id: 'sess-refused' }))).rejects.toThrow(/cannot be written.*ENOSPC/);
    await waitFor(() => laterErrors.length === 50, 5000, 'queued events to be refused');
    expect(laterErrors.every((e) => e && /ENOSPC/.test(e.message))).toBe(true);
    expect(w.healthy).toBe(false);
    // While failing, every append is refused at once, without touching the disk; the session's end too.
    await expect(w.append(sampleEvent(300))).rejects.toThrow(/cannot be written/);
    await expect(w.append(sessionEvent('session.end', 'sess-open'))).rejects.toThrow(/cannot be written/);
    const refusedWhileDown = w.outage!.refused;
    expect(refusedWhileDown).toBe(53);
    // Probes keep failing while the disk is full.
    await new Promise((r) => setTimeout(r, 300));
    expect(w.healthy).toBe(false);

    fs.rmSync(filler);
    await waitFor(() => w.healthy, 10_000, 'the writer to recover by itself');
    const after = await w.append(sampleEvent(400));
    await w.close();

    const v = verifyAuditLog(dir, key.publicPem);
    expect(v.firstBad).toBeUndefined();
    const { records } = await searchAuditLog(dir, {});
    // No refused event is in the log; the chain goes on from the last durable record.
    expect(records.filter((r) => r.event.session_id === 'sess-refused')).toEqual([]);
    const outage = records.filter((r) => r.event.type === 'audit.outage');
    expect(outage).toHaveLength(1);
    expect(outage[0].seq).toBeGreaterThan(durableBefore);
    expect(outage[0].event.details).toMatchObject({ reason: 'ENOSPC', events_refused: refusedWhileDown, session_ends_recorded_late: 1 });
    expect(Date.parse(outage[0].event.details.ended as string)).toBeGreaterThanOrEqual(Date.parse(outage[0].event.details.started as string));
    // The session.end refused during the outage is written right after it, marked.
    const end = records.find((r) => r.event.type === 'session.end' && r.event.session_id === 'sess-open')!;
    expect(end.seq).toBe(outage[0].seq + 1);
    expect(end.event.details).toMatchObject({ reason: 'audit_unavailable', recorded_after_outage: true });
    expect(records.at(-2)!.seq).toBe(after.seq);
    const seqs = records.map((r) => r.seq);
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
  });

  it('a segment on /dev/full (runs anywhere): refuses, recovers once the device is gone, cuts nothing acknowledged', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { recoveryProbeMs: 50, segmentMaxBytes: 4096 }));
    await w.append(sessionEvent('session.start', 'sess-open'));
    const links: string[] = [];
    for (let seq = 2; seq < 500; seq++) {
      const p = path.join(dir, segmentName(seq, new Date()));
      if (!fs.existsSync(p)) {
        fs.symlinkSync('/dev/full', p);
        links.push(p);
      }
    }
    const acked: number[] = [];
    let failed: Error | undefined;
    for (let i = 0; i < 200 && !failed; i++) {
      await w.append(sampleEvent(i)).then((r) => acked.push(r.seq), (e) => (failed = e));
    }
    expect(failed?.message).toMatch(/cannot be written/);
    expect(w.healthy).toBe(false);
    await new Promise((r) => setTimeout(r, 200));
    expect(w.healthy).toBe(false); // probes fail while the next segment is still the full device
    for (const l of links) fs.rmSync(l, { force: true });
    await waitFor(() => w.healthy, 10_000, 'the writer to recover');
    await w.append(sampleEvent(999));
    await w.close();

    expect(verifyAuditLog(dir, key.publicPem).firstBad).toBeUndefined();
    const { records } = await searchAuditLog(dir, {});
    const bySeq = new Map(records.map((r) => [r.seq, r]));
    for (const seq of acked) expect(bySeq.get(seq)?.event.type, `acknowledged seq ${seq}`).toBe('db.query');
    expect(records.filter((r) => r.event.type === 'audit.outage')).toHaveLength(1);
  });

  it('closed during an outage: refused records are cut, so the next start does not take them for records', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { recoveryProbeMs: 60_000, segmentMaxBytes: 4096 }));
    const acked = [await w.append(sampleEvent(1000)), await w.append(sampleEvent(1001))];
    await w.checkpoint();
    const links: string[] = [];
    for (let seq = 2; seq < 500; seq++) {
      const p = path.join(dir, segmentName(seq, new Date()));
      if (!fs.existsSync(p)) fs.symlinkSync('/dev/full', p), links.push(p);
    }
    const refused: string[] = [];
    const pending: Promise<unknown>[] = [];
    // Many appends in one group: the group seals the segment (written) and continues on the full device.
    for (let i = 0; i < 100; i++) {
      const e = sampleEvent(i);
      pending.push(w.append(e).catch(() => refused.push(e.id)));
    }
    await Promise.all(pending);
    expect(refused.length).toBeGreaterThan(0);
    expect(w.healthy).toBe(false);
    await w.close();
    for (const l of links) fs.rmSync(l, { force: true });
    const w2 = await openAuditLog(dir, auditOptions(key.keyFile));
    await w2.close();
    expect(verifyAuditLog(dir, key.publicPem).firstBad).toBeUndefined();
    const ids = new Set((await searchAuditLog(dir, {})).records.map((r) => r.event.id));
    for (const id of refused) expect(ids.has(id), `refused ${id}`).toBe(false);
    const bySeq = new Map((await searchAuditLog(dir, {})).records.map((r) => [r.seq, r.hash]));
    for (const a of acked) expect(bySeq.get(a.seq)).toBe(a.hash);
    expect(fs.readdirSync(path.join(dir, 'quarantine')).some((f) => f.endsWith('.refused'))).toBe(true);
  });
});
