import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { commitChannel, type CommitMessage } from '../../recorder/audit/writer.ts';
import { EventBus } from '../../src/events/bus.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

const input = (i: number) => {
  const { id: _id, time: _time, ...rest } = sampleEvent(i);
  return rest;
};

describe('strict durability: its own commit window', () => {
  it('beforeForward in strict mode commits within strict_commit_window, not the (here: 1 min) commit window, and concurrent sessions share fsyncs', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    // A commit window nobody would wait out in a test: were strict appends to use it, this would hang.
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { commitWindowMs: 60_000, backgroundWindowMs: 60_000, strictWindowMs: 0 }));
    const bus = new EventBus(w, 'strict');
    await bus.emit(input(0)); // the first commit goes at once; from now on the 1 min window applies
    const durable: CommitMessage[] = [];
    const listen = (m: unknown) => void ((m as CommitMessage).phase === 'durable' && durable.push(m as CommitMessage));
    commitChannel.subscribe(listen);
    try {
      for (let round = 0; round < 3; round++) {
        const sessions = Array.from({ length: 20 }, (_, i) => bus.beforeForward(input(round * 100 + i + 1)));
        expect(sessions.every((p) => p instanceof Promise)).toBe(true);
        await Promise.all(sessions);
      }
    } finally {
      commitChannel.unsubscribe(listen);
    }
    // 60 statements, each durable before it would be forwarded, in far fewer fsyncs than statements.
    expect(durable.length).toBeGreaterThanOrEqual(3);
    expect(durable.length).toBeLessThanOrEqual(6);
    await w.close();
    const { records } = await searchAuditLog(dir, { type: 'db.query' });
    expect(records).toHaveLength(61);
  }, 20_000);

  it('batched mode records without a promise (forward at once)', async () => {
    const base = tempDir();
    const key = makeSigningKey(path.join(base, 'ca'));
    const w = await openAuditLog(path.join(base, 'audit'), auditOptions(key.keyFile));
    const bus = new EventBus(w, 'batched');
    expect(bus.beforeForward(input(1))).toBeUndefined();
    await w.close();
    expect((await searchAuditLog(path.join(base, 'audit'), { type: 'db.query' })).records).toHaveLength(1);
  });
});
