/**
 * The hash-chained, signed, append-only audit log. One process (the gateway, or a CLI command when no
 * gateway runs) holds the writer lock of a data dir's audit/ directory; other processes add events
 * through the spool, which the writer ingests into the same chain.
 */
import type { AuditSink } from '../types.ts';
import { VigilError } from '../../src/errors.ts';
import { openAuditLog, type AuditOpenOptions, type AuditLogWriter } from './writer.ts';
import { openSpoolClient } from './spool.ts';

export { openAuditLog, HEAD_FILE, QUARANTINE_DIR, type AuditOpenOptions, type AuditLogWriter } from './writer.ts';
export { verifyAuditLog, VERIFY_EXIT_CODES, type VerifyResult, type VerifyProblem, type VerifyOptions, type VerifyStatus } from './verify.ts';
export { witnessPublisher, readWitness, type WitnessConfig, type WitnessPublisher } from './witness.ts';
export { searchAuditLog, tailAuditLog, type AuditRecord, type AuditQuery, type SearchResult, type TailOptions } from './read.ts';
export { formatEventRow, escapeTerminal, EVENT_ROW_HEADER } from './format.ts';
export { encodeEvent } from './encode.ts';
export { canonicalJson } from './canonical.ts';
export { listSegments } from './segments.ts';
export { startIndexFollower, type IndexFollower } from './index-follower.ts';
export { AuditIndex, AuditIndexError, INDEX_FILE, searchIndexed, searchIndexedStream, searchableText, chainHeadSeq, type TextQuery, type IndexStatus, type CatchUpResult } from './search-index.ts';
export { SPOOL_DIR, openSpoolClient } from './spool.ts';

/**
 * For CLI commands: the writer when the lock is free, otherwise a spool client whose append() resolves
 * once the running writer (the gateway) has made the event durable in the chain.
 */
export async function openAuditForCli(dir: string, opts: AuditOpenOptions & { spoolTimeoutMs?: number }): Promise<AuditSink & { mode: 'writer' | 'spool' }> {
  try {
    const writer: AuditLogWriter = await openAuditLog(dir, opts);
    return Object.assign(writer, { mode: 'writer' as const });
  } catch (e) {
    if (!(e instanceof VigilError) || e.code !== 'VIGIL_AUDIT_LOCKED') throw e;
    return Object.assign(openSpoolClient(dir, opts.spoolTimeoutMs), { mode: 'spool' as const });
  }
}
