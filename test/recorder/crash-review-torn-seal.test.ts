import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog, verifyAuditLog, listSegments, searchAuditLog, QUARANTINE_DIR } from '../../recorder/audit/index.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

/**
 * At rotation the writer creates the next segment (and fsyncs the directory) before it writes the seal
 * that names it, so that a durable seal never names a missing segment. A crash that tears the write of the
 * group ending in the seal (a power cut, or SIGKILL in the middle of a large write) leaves the sealed
 * segment with a partial last line, followed by the new segment, still empty. That is a crash tail like any
 * other: verify must call it torn-tail (exit 4, reopen to set it aside), not a malformed, tampered log.
 */
describe('crash during a segment seal', () => {
  it('a torn seal followed by the empty next segment verifies as a torn tail; reopening sets it aside', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { segmentMaxBytes: 4096 }));
    for (let i = 0; i < 3; i++) await w.append(sampleEvent(i));
    await w.checkpoint();
    for (let i = 3; i < 8; i++) await w.append(sampleEvent(i));
    // The state of the directory when the seal of the first segment was being written: its records
    // durable, the seal line cut short, the next segment created but empty, no sidecar, no newer head.
    const crashed = path.join(base, 'crashed');
    fs.cpSync(dir, crashed, { recursive: true });
    await w.close();
    const [first, second, ...later] = listSegments(crashed);
    expect(second, 'the log rotated').toBeDefined();
    for (const name of later) fs.rmSync(path.join(crashed, name));
    const firstFile = path.join(crashed, first);
    const text = fs.readFileSync(firstFile, 'utf8');
    const sealAt = text.lastIndexOf('\n', text.length - 2) + 1;
    expect(text.slice(sealAt)).toContain('"next_segment"');
    fs.writeFileSync(firstFile, text.slice(0, sealAt + 60));
    fs.writeFileSync(path.join(crashed, second), '');
    for (const f of fs.readdirSync(crashed)) if (f.endsWith('.meta') || f === 'head.json' || f === 'writer.lock') fs.rmSync(path.join(crashed, f));

    const before = verifyAuditLog(crashed, key.publicPem);
    expect(before.firstBad).toMatchObject({ kind: 'torn-tail', segment: first });
    expect(before.status).toBe('unsealed-tail');

    const w2 = await openAuditLog(crashed, auditOptions(key.keyFile, { segmentMaxBytes: 4096 }));
    await w2.close();
    const after = verifyAuditLog(crashed, key.publicPem);
    expect(after.firstBad).toBeUndefined();
    expect(fs.readdirSync(path.join(crashed, QUARANTINE_DIR))).toHaveLength(1);
    // Every complete record before the torn seal is still there, and the chain goes on after them.
    const whole = text.slice(0, sealAt).split('\n').filter(Boolean).length;
    const { records } = await searchAuditLog(crashed, {});
    expect(records.slice(0, whole).map((r) => r.seq)).toEqual(Array.from({ length: whole }, (_, i) => i + 1));
    expect(records.length).toBeGreaterThan(whole);
  });
});
