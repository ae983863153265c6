import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { verifyAuditLogInWorker } from '../../recorder/audit/verify-worker.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

/**
 * The console verifies the log in a worker while the gateway goes on writing it: a segment sealed between
 * the verifier's listing and its reading of that segment names a next segment the listing did not have.
 * That is a live log moving on, not a truncated one.
 */
describe('verifying a log while it is written', () => {
  it('a segment sealed during a verification is followed into the next one, never reported missing', async () => {
    const base = tempDir('vigil-verify-live-');
    const key = makeSigningKey(path.join(base, 'ca'));
    const dir = path.join(base, 'audit');
    // Small segments: a seal every few records, so seals keep landing while verifications run.
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { segmentMaxBytes: 6000 }));
    let writing = true;
    let i = 0;
    const writer = (async () => {
      while (writing) await w.append(sampleEvent(i++));
    })();
    try {
      while (i < 200) await new Promise((r) => setTimeout(r, 10));
      const statuses: string[] = [];
      for (let round = 0; round < 25; round++) {
        const res = await verifyAuditLogInWorker({ auditDir: dir, publicKeyFile: key.pubFile });
        statuses.push(res.ok ? res.status : `${res.status}:${res.firstBad?.kind}`);
      }
      // Intact and signed up to a checkpoint, perhaps with records after it: never invalid.
      expect(statuses.filter((s) => s.startsWith('invalid'))).toEqual([]);
      expect(i).toBeGreaterThan(400);
    } finally {
      writing = false;
      await writer;
      await w.close();
    }
  }, 60_000);
});
