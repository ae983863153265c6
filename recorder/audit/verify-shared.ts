import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { AuditChainInfo, AuditChainStore, IndexedAuditRow } from '../../src/store/types.ts';
import { parseRecordLine, recordHash, verifyCheckpointSignature, CHECKPOINT_TAIL } from './record.ts';
import { listSegments } from './segments.ts';
import { purgedThroughOf } from './shared-index.ts';

/**
 * Verification of the shared index (PostgreSQL), chain by chain, from the database alone: for every
 * registered replica, its rows must be contiguous (no seq missing), each row's hash must be the hash of
 * its own bytes, each must link to the one before, every checkpoint row must carry a valid signature by a
 * key registered for that replica over the row before it, the rows must end on a checkpoint (the index
 * only ever holds signed records: anything after the last checkpoint was not put there by the replica),
 * and the last row must be the head the replica recorded (seq and hash). The local chain is then compared
 * record by record with its rows, which catches a chain and an index that disagree (either rewritten).
 */
export interface SharedProblem {
  seq: number;
  kind: 'hash-mismatch' | 'broken-chain' | 'records-missing' | 'reordered' | 'bad-checkpoint' | 'uncovered-tail' | 'head-mismatch' | 'diverged' | 'malformed';
  problem: string;
}

export interface ChainCheck {
  replica: string;
  host: string;
  ok: boolean;
  rows: number;
  firstSeq: number;
  lastSeq: number;
  checkpoints: number;
  /** Key ids registered for the replica. */
  keyIds: string[];
  firstBad?: SharedProblem;
}

export interface LocalCheck {
  replica: string;
  ok: boolean;
  /** Local records compared with their rows, and signed local records not indexed yet (lag). */
  compared: number;
  notIndexed: number;
  firstBad?: SharedProblem;
}

export interface SharedVerifyResult {
  ok: boolean;
  chains: ChainCheck[];
  local?: LocalCheck;
}

const PAGE = 5000;
/** How often the head is read again while a live replica's rows grow under the reading (then it reports). */
const HEAD_REREADS = 5;

export async function verifySharedIndex(chains: AuditChainStore, local?: { replica: string; auditDir: string }): Promise<SharedVerifyResult> {
  const out: ChainCheck[] = [];
  for (const c of await chains.chains()) out.push(await verifyChainRows(chains, c));
  let localCheck: LocalCheck | undefined;
  if (local) {
    const info = await chains.chain(local.replica);
    localCheck = await compareLocal(chains, local.replica, local.auditDir, info);
  }
  return { ok: out.every((c) => c.ok) && (localCheck?.ok ?? true), chains: out, local: localCheck };
}

async function verifyChainRows(chains: AuditChainStore, c: AuditChainInfo): Promise<ChainCheck> {
  const keys = new Map<string, crypto.KeyObject>();
  for (const k of c.keys) {
    try {
      keys.set(k.key_id, crypto.createPublicKey(k.public_key));
    } catch {
      // An unreadable key verifies nothing: its checkpoints fail below.
    }
  }
  const res: ChainCheck = { replica: c.replica, host: c.host, ok: true, rows: 0, firstSeq: 0, lastSeq: 0, checkpoints: 0, keyIds: c.keys.map((k) => k.key_id) };
  const bad = (p: SharedProblem) => {
    res.ok = false;
    res.firstBad ??= p;
    return res;
  };
  if (c.diverged) bad({ seq: c.diverged.seq, kind: 'diverged', problem: `the replica's chain diverged from the index at seq ${c.diverged.seq} (${c.diverged.at}): ${c.diverged.problem}` });
  let prev: IndexedAuditRow | undefined;
  let lastCheckpointSeq = 0;
  // Where `audit.purged` events say the chain was cut: the index may start right after one of them.
  const cutAt = new Set<number>();
  // The head the rows must end on. A live replica keeps indexing while its rows are read (rows and head
  // move together, in one transaction), so rows past the head read first are looked up again below.
  let head = { seq: c.indexedSeq, hash: c.indexedHash };
  for (let after = 0, rereads = 0; ; ) {
    const page = await chains.rows(c.replica, after, PAGE);
    for (const r of page) {
      res.rows++;
      if (res.firstSeq === 0) res.firstSeq = r.seq;
      if (prev) {
        if (r.seq !== prev.seq + 1) return bad({ seq: prev.seq + 1, kind: r.seq > prev.seq + 1 ? 'records-missing' : 'reordered', problem: `rows ${prev.seq + 1}..${r.seq - 1} are missing from the index` });
        if (r.prev !== prev.hash) return bad({ seq: r.seq, kind: 'broken-chain', problem: `row ${r.seq} does not link to row ${prev.seq}` });
      }
      if (recordHash(r.seq, r.prev, r.eventJson) !== r.hash) return bad({ seq: r.seq, kind: 'hash-mismatch', problem: `row ${r.seq}: its hash is not the hash of its bytes (edited in the database)` });
      if (r.eventJson.endsWith(CHECKPOINT_TAIL.slice(0, -1))) {
        let d: { seq?: unknown; head?: unknown; sig?: unknown; key_id?: unknown };
        try {
          d = (JSON.parse(r.eventJson) as { details?: typeof d }).details ?? {};
        } catch {
          return bad({ seq: r.seq, kind: 'malformed', problem: `row ${r.seq}: not JSON` });
        }
        const key = keys.get(String(d.key_id));
        if (!prev || d.seq !== prev.seq || d.head !== prev.hash || !key || !verifyCheckpointSignature(key, prev.seq, prev.hash, String(d.sig))) {
          return bad({ seq: r.seq, kind: 'bad-checkpoint', problem: `row ${r.seq}: checkpoint ${key ? 'signature does not check' : `signed by key ${String(d.key_id)}, not a key registered for ${c.replica}`}` });
        }
        res.checkpoints++;
        lastCheckpointSeq = r.seq;
      }
      const through = purgedThroughOf(r);
      if (through !== undefined) cutAt.add(through);
      prev = r;
      res.lastSeq = r.seq;
    }
    if (page.length === PAGE) {
      after = page[page.length - 1].seq;
      continue;
    }
    if (!prev || prev.seq <= head.seq || rereads >= HEAD_REREADS) break;
    // Rows past the head read at the start: the replica indexed more meanwhile, or rows were added behind
    // its back. Its head as it stands now decides, with the rows it has added since.
    const now = await chains.chain(c.replica);
    rereads++;
    if (!now || now.indexedSeq < prev.seq) break;
    head = { seq: now.indexedSeq, hash: now.indexedHash };
    after = prev.seq;
  }
  if (res.firstSeq > 1 && !cutAt.has(res.firstSeq - 1)) {
    return bad({ seq: 1, kind: 'records-missing', problem: `rows 1..${res.firstSeq - 1} are missing from the index, and no audit.purged event says a retention purge removed them` });
  }
  if (prev && lastCheckpointSeq !== prev.seq) return bad({ seq: lastCheckpointSeq + 1, kind: 'uncovered-tail', problem: `rows ${lastCheckpointSeq + 1}..${prev.seq} are not signed by any checkpoint (the index holds signed records only)` });
  if ((prev?.seq ?? 0) !== head.seq || (prev?.hash ?? '') !== head.hash) {
    return bad({ seq: head.seq, kind: 'head-mismatch', problem: `the rows end at seq ${prev?.seq ?? 0}, the replica recorded its indexed head at seq ${head.seq} (rows removed or added)` });
  }
  return res;
}

/** The local chain against its rows: same hash at every seq both hold; rows beyond the chain diverge. */
async function compareLocal(chains: AuditChainStore, replica: string, auditDir: string, info: AuditChainInfo | undefined): Promise<LocalCheck> {
  const res: LocalCheck = { replica, ok: true, compared: 0, notIndexed: 0 };
  const indexedSeq = info?.indexedSeq ?? 0;
  let page: IndexedAuditRow[] = [];
  let at = 0;
  let after = 0;
  const rowFor = async (seq: number): Promise<IndexedAuditRow | undefined> => {
    for (;;) {
      while (at < page.length && page[at].seq < seq) at++;
      if (at < page.length) return page[at].seq === seq ? page[at] : undefined;
      if (after >= indexedSeq) return undefined;
      page = await chains.rows(replica, after, PAGE);
      at = 0;
      if (page.length === 0) return undefined;
      after = page[page.length - 1].seq;
    }
  };
  let lastLocal = 0;
  for (const segment of listSegments(auditDir)) {
    const buf = fs.readFileSync(path.join(auditDir, segment));
    for (let i = 0; ; ) {
      const nl = buf.indexOf(0x0a, i);
      if (nl < 0) break;
      const rec = parseRecordLine(buf.toString('utf8', i, nl));
      i = nl + 1;
      if (typeof rec === 'string') continue; // the local verification reports it
      lastLocal = rec.seq;
      if (rec.seq > indexedSeq) {
        res.notIndexed++;
        continue;
      }
      const row = await rowFor(rec.seq);
      if (!row) continue; // a missing row is the row check's finding (records-missing)
      res.compared++;
      if (row.hash !== rec.hash && res.ok) {
        res.ok = false;
        res.firstBad = { seq: rec.seq, kind: 'diverged', problem: `record ${rec.seq}: the local chain and the index differ (hash ${rec.hash.slice(0, 16)}… here, ${row.hash.slice(0, 16)}… indexed)` };
      }
    }
  }
  if (res.ok && indexedSeq > lastLocal) {
    res.ok = false;
    res.firstBad = { seq: lastLocal + 1, kind: 'diverged', problem: `the index holds this replica's records up to seq ${indexedSeq}, the local chain ends at seq ${lastLocal} (cut back or restored)` };
  }
  return res;
}
