import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog, searchAuditLog, verifyAuditLog, SPOOL_DIR } from '../../recorder/audit/index.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

/**
 * A gateway killed after a spooled CLI event became durable in the chain but before it answered the CLI
 * leaves the event's `.claimed` file behind; the restarted writer takes it again. The CLI is still waiting
 * (it gives the writer a second timeout once its event is claimed) and must hear that its event IS recorded,
 * with its receipt; and the chain must hold the event once, even when the log rotated to a new segment
 * between the append and the kill.
 */
async function crashStateWithClaimedEvent(rotateAfter: boolean) {
  const base = tempDir();
  const key = makeSigningKey(path.join(base, 'ca'));
  const dir = path.join(base, 'audit');
  const w = await openAuditLog(dir, auditOptions(key.keyFile, { segmentMaxBytes: 4096, spoolWatch: false, spoolPollMs: 3_600_000 }));
  const spooled = sampleEvent(1, { type: 'cert.revoked', session_id: undefined, details: { serial: 'ab12', reason: 'lost laptop' } });
  // What the spool ingest does with a claimed event: append it (durable on return).
  const receipt = await w.append(spooled);
  if (rotateAfter) for (let i = 0; i < 30; i++) await w.append(sampleEvent(i));
  // The state a kill -9 right then leaves: the live directory as it is, with the claimed file still there.
  const crashed = path.join(base, 'crashed');
  fs.cpSync(dir, crashed, { recursive: true });
  fs.rmSync(path.join(crashed, 'writer.lock'));
  const spoolBase = `${spooled.id}-4242-0`;
  fs.writeFileSync(path.join(crashed, SPOOL_DIR, `${spoolBase}.claimed`), JSON.stringify(spooled));
  await w.close();
  if (rotateAfter) expect(fs.readdirSync(crashed).filter((f) => f.endsWith('.jsonl')).length).toBeGreaterThan(2);
  return { crashed, key, spooled, receipt, spoolBase };
}

describe('audit spool: a claimed event left by a killed writer', () => {
  for (const rotateAfter of [false, true]) {
    it(`is answered with its receipt and recorded once at the restart${rotateAfter ? ' (the log rotated after it)' : ''}`, async () => {
      const { crashed, key, spooled, receipt, spoolBase } = await crashStateWithClaimedEvent(rotateAfter);
      const w2 = await openAuditLog(crashed, auditOptions(key.keyFile, { segmentMaxBytes: 4096, spoolWatch: false }));
      await w2.close();
      const spoolDir = path.join(crashed, SPOOL_DIR);
      expect(fs.existsSync(path.join(spoolDir, `${spoolBase}.nack`)), fs.existsSync(path.join(spoolDir, `${spoolBase}.nack`)) ? fs.readFileSync(path.join(spoolDir, `${spoolBase}.nack`), 'utf8') : '').toBe(false);
      expect(JSON.parse(fs.readFileSync(path.join(spoolDir, `${spoolBase}.ack`), 'utf8'))).toEqual(receipt);
      expect(fs.existsSync(path.join(spoolDir, `${spoolBase}.claimed`))).toBe(false);
      const { records } = await searchAuditLog(crashed, { type: 'cert.revoked' });
      expect(records.filter((r) => r.event.id === spooled.id).map((r) => r.seq)).toEqual([receipt.seq]);
      expect(verifyAuditLog(crashed, key.publicPem).ok).toBe(true);
    });
  }
});
