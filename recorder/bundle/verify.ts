import fs from 'node:fs';
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import tar from 'tar-stream';
import { ZERO_HASH, keyId, recordHash, verifyCheckpointSignature, type CheckpointDetails } from '../audit/record.ts';
import {
  BUNDLE_EXIT_CODES, BUNDLE_FORMAT, FILES, RECORDINGS_PREFIX, checkManifestSignature, keyFingerprint, parseKeyFingerprint, recordingIdsOf, sha256,
  type BundleManifest, type BundleProblemKind,
} from './format.ts';
import { bundleSelects, inRange, parseChainLine, type ChainRecord } from './select.ts';

export interface BundleProblem {
  kind: BundleProblemKind;
  message: string;
}

export interface BundleVerifyResult {
  ok: boolean;
  /** Exit code: 0, or that of the first problem. */
  code: number;
  problems: BundleProblem[];
  manifest?: BundleManifest;
  /** The short id of the bundle's key (how events and checkpoints name it); not a pin. */
  keyId?: string;
  /** The full SHA-256 fingerprint of the bundle's key: what to compare with the published one. */
  keyFingerprint?: string;
  events: number;
  chainRecords: number;
  checkpoints: number;
  recordings: number;
  /** Of those, how many match the SHA-256 their recording.stored event in the chain logged, or for one never
   *  uploaded its recording.closed (the rest rest on the manifest alone). */
  recordingsStored: number;
  /** How the range's start and end are shown to hold nothing else (for the report). */
  boundaries: string[];
}

interface Member {
  data?: Buffer;
  sha256: string;
  bytes: number;
}

/** Read the archive: small members kept, recordings only hashed (they can be large). */
async function readMembers(file: string): Promise<Map<string, Member>> {
  const members = new Map<string, Member>();
  const ex = tar.extract();
  ex.on('entry', (header, stream, next) => {
    const name = header.name;
    const fail = (why: string) => {
      stream.resume();
      next(new Error(why));
    };
    if (header.type !== 'file') return fail(`member ${JSON.stringify(name)} is not a regular file`);
    if (name.startsWith('/') || name.split('/').includes('..')) return fail(`member ${JSON.stringify(name)} has an unsafe path`);
    if (members.has(name)) return fail(`member ${name} appears twice`);
    const keep = !name.startsWith(RECORDINGS_PREFIX);
    const h = crypto.createHash('sha256');
    const chunks: Buffer[] = [];
    let bytes = 0;
    stream.on('data', (data: unknown) => {
      const c = data as Buffer;
      h.update(c);
      bytes += c.length;
      if (keep) chunks.push(c);
    });
    stream.on('end', () => {
      members.set(name, { data: keep ? Buffer.concat(chunks) : undefined, sha256: h.digest('hex'), bytes });
      next();
    });
    stream.on('error', (e) => next(e));
  });
  await pipeline(fs.createReadStream(file), ex as unknown as Writable);
  return members;
}

const isCheckpoint = (r: ChainRecord) => r.event.type === 'audit.checkpoint';

export interface VerifyBundleOptions {
  /** The audit public key the verifier trusts (PEM); without it (or a fingerprint) the bundle's own key is used and reported. */
  expectedKeyPem?: string | Buffer;
  /** Or the full SHA-256 fingerprint of that key (64 hex): compared in full, never a prefix. */
  expectedFingerprint?: string;
}

/**
 * Verify an evidence bundle with nothing but the archive (and optionally a trusted key). Every check runs;
 * problems are reported in check order: chain, checkpoints, events, completeness, recordings, manifest.
 */
export async function verifyBundle(file: string, opts: VerifyBundleOptions = {}): Promise<BundleVerifyResult> {
  const result: BundleVerifyResult = { ok: false, code: 0, problems: [], events: 0, chainRecords: 0, checkpoints: 0, recordings: 0, recordingsStored: 0, boundaries: [] };
  const problem = (kind: BundleProblemKind, message: string) => result.problems.push({ kind, message });
  const finish = () => {
    result.ok = result.problems.length === 0;
    result.code = result.ok ? BUNDLE_EXIT_CODES.ok : BUNDLE_EXIT_CODES[result.problems[0].kind];
    return result;
  };

  let members: Map<string, Member>;
  try {
    members = await readMembers(file);
  } catch (e) {
    problem('unreadable', `not a readable bundle: ${(e as Error).message}`);
    return finish();
  }
  for (const required of Object.values(FILES)) {
    if (!members.has(required)) problem('unreadable', `the bundle has no ${required}`);
  }
  if (result.problems.length) return finish();
  const text = (name: string) => members.get(name)!.data!.toString('utf8');

  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey(text(FILES.publicKey));
  } catch (e) {
    problem('unreadable', `${FILES.publicKey} is not a public key (${(e as Error).message})`);
    return finish();
  }
  result.keyId = keyId(key);
  result.keyFingerprint = keyFingerprint(key);
  // The pin is the whole fingerprint: a 16-hex key id is 64 bits, and a key sharing it can be searched for.
  let trustedFingerprint: string | undefined;
  if (opts.expectedKeyPem !== undefined) {
    try {
      trustedFingerprint = keyFingerprint(crypto.createPublicKey(opts.expectedKeyPem));
    } catch (e) {
      problem('unreadable', `the key given with --key is not a public key (${(e as Error).message})`);
      return finish();
    }
  } else if (opts.expectedFingerprint !== undefined) {
    trustedFingerprint = parseKeyFingerprint(opts.expectedFingerprint);
    if (!trustedFingerprint) {
      problem('unreadable', `the fingerprint given with --key is not a full SHA-256 fingerprint (64 hex characters): ${JSON.stringify(opts.expectedFingerprint)}`);
      return finish();
    }
  }
  if (trustedFingerprint !== undefined && trustedFingerprint !== result.keyFingerprint) {
    problem('wrong_key', `the bundle is signed by audit key ${result.keyId}, not by the trusted key (SHA-256 fingerprints: the bundle's ${result.keyFingerprint}, the trusted ${trustedFingerprint})`);
    return finish();
  }
  const manifestBytes = members.get(FILES.manifest)!.data!;
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(manifestBytes.toString('utf8')) as BundleManifest;
    if (manifest.format !== BUNDLE_FORMAT) throw new Error(`format is ${JSON.stringify(manifest.format)}, expected ${BUNDLE_FORMAT}`);
    if (!manifest.range || !manifest.filter || !manifest.chain_seq || !Array.isArray(manifest.files)) throw new Error('fields missing');
    if (typeof manifest.range.since !== 'string' || typeof manifest.range.until !== 'string') throw new Error('range is not two times');
    if (!manifest.files.every((f) => f && typeof f.path === 'string' && typeof f.sha256 === 'string' && typeof f.bytes === 'number')) throw new Error('a file entry is malformed');
  } catch (e) {
    problem('unreadable', `${FILES.manifest} is not a bundle manifest (${(e as Error).message})`);
    return finish();
  }
  result.manifest = manifest;

  const parseLines = (name: string): ChainRecord[] | undefined => {
    const body = text(name);
    if (body !== '' && !body.endsWith('\n')) {
      problem('unreadable', `${name} does not end with a newline (cut short)`);
      return undefined;
    }
    const out: ChainRecord[] = [];
    const lines = body === '' ? [] : body.slice(0, -1).split('\n');
    for (let i = 0; i < lines.length; i++) {
      const r = parseChainLine(lines[i]);
      if (typeof r === 'string') {
        problem('unreadable', `${name} line ${i + 1}: ${r}`);
        return undefined;
      }
      out.push(r);
    }
    return out;
  };
  const chain = parseLines(FILES.chain);
  const events = parseLines(FILES.events);
  if (!chain || !events) return finish();
  result.chainRecords = chain.length;
  result.events = events.length;
  if (chain.length === 0) {
    problem('removed', `${FILES.chain} is empty: nothing proves the selection`);
    return finish();
  }

  // 1. The chain: runs of consecutive seqs, each record linked to the one before and hashing to itself.
  // The only run allowed besides the main one is the one vouching for a retention anchor (manifest.purge).
  const bySeq = new Map<number, ChainRecord>();
  const runs: ChainRecord[][] = [];
  for (let i = 0; i < chain.length; i++) {
    const r = chain[i];
    const p = chain[i - 1];
    if (bySeq.has(r.seq)) problem('altered', `${FILES.chain}: seq ${r.seq} appears twice`);
    bySeq.set(r.seq, r);
    if (!p || r.seq !== p.seq + 1) {
      if (p && r.seq <= p.seq) problem('altered', `${FILES.chain}: seq ${r.seq} is out of order after seq ${p.seq}`);
      else if (p && !(manifest.purge && r.seq === manifest.purge.purged_event_seq && runs.length === 1)) {
        problem('removed', `records seq ${p.seq + 1}${r.seq - 1 > p.seq + 1 ? `..${r.seq - 1}` : ''} are missing from the chain (removed)`);
      }
      runs.push([r]);
    } else {
      runs[runs.length - 1].push(r);
      if (r.prev !== p.hash) problem('altered', `record seq ${r.seq} does not link to seq ${p.seq}: a record was altered and re-hashed`);
    }
    if (recordHash(r.seq, r.prev, r.eventJson) !== r.hash) problem('altered', `record seq ${r.seq} (${r.event.type}) was altered: its hash does not match its content`);
  }
  const main = runs[0];
  if (main[0].seq !== manifest.chain_seq.first) problem('removed', `the chain starts at seq ${main[0].seq}, the manifest says ${manifest.chain_seq.first}: records were removed`);

  // 2. Checkpoints: each signed by the bundle's key over the record before it; each run ends with one.
  for (const r of chain) {
    if (!isCheckpoint(r)) continue;
    result.checkpoints++;
    const d = r.event.details as unknown as CheckpointDetails | undefined;
    if (!d || d.seq !== r.seq - 1 || d.head !== r.prev || !verifyCheckpointSignature(key, d.seq, d.head, String(d.sig))) {
      problem('checkpoint', `checkpoint seq ${r.seq} is not signed by the bundle's audit key ${result.keyId} over the record before it (key_id in it: ${String(d?.key_id)})`);
    }
  }
  for (const run of runs) {
    const last = run[run.length - 1];
    if (!isCheckpoint(last)) problem('checkpoint', `records seq ${run[0].seq}..${last.seq} are not covered by a signed checkpoint (the chain must end with one)`);
  }

  // 3. Selected events: each exactly the chain's record at its seq.
  const selectedSeqs = new Set<number>();
  for (const e of events) {
    const c = bySeq.get(e.seq);
    if (selectedSeqs.has(e.seq)) problem('altered', `${FILES.events}: event seq ${e.seq} appears twice`);
    selectedSeqs.add(e.seq);
    if (!c) problem('altered', `event seq ${e.seq} (${e.event.type}) is not in the chain: it cannot be proven`);
    else if (c.line !== e.line) problem('altered', `event seq ${e.seq} (${e.event.type}) differs from the chain's record: altered`);
  }

  // 4. Completeness: the filter re-applied to every record of the main run; the run's edges lie outside the range.
  const range = manifest.range;
  const selects = bundleSelects(manifest.filter, range);
  for (const r of main) {
    if (selects(r.event) && !selectedSeqs.has(r.seq)) {
      problem('incomplete', `event seq ${r.seq} (${r.event.type}, ${r.event.time}, user ${r.event.actor?.user ?? '-'}) matches the filter but is not among the selected events: withheld`);
    }
  }
  const inMain = new Set(main.map((r) => r.seq));
  for (const e of events) {
    const c = bySeq.get(e.seq);
    if (c && !selects(c.event)) problem('incomplete', `event seq ${e.seq} (${c.event.type}) does not match the bundle's filter and range`);
    if (c && !inMain.has(c.seq)) problem('incomplete', `event seq ${e.seq} lies outside the covered interval`);
  }
  const first = main[0];
  if (first.seq === 1 && first.prev === ZERO_HASH) result.boundaries.push('the chain starts at the first record of the log');
  else if (manifest.purge && first.seq === manifest.purge.anchor_seq) {
    const next = (first.event.details as { next_segment?: string } | undefined)?.next_segment;
    const vouched = chain.some((r) => r.event.type === 'audit.purged' && (r.event.details as { last_seq?: number } | undefined)?.last_seq === first.seq);
    if (!isCheckpoint(first) || !next || !vouched) {
      problem('incomplete', `the chain starts at seq ${first.seq}, which is not a retention anchor vouched for by an audit.purged event: earlier records of the range are not shown to be absent`);
    } else result.boundaries.push(`records before seq ${first.seq + 1} were purged by retention (anchor seq ${first.seq}, audit.purged seq ${manifest.purge.purged_event_seq})`);
  } else if (inRange(first.event, range)) {
    problem('incomplete', `the chain starts inside the range (seq ${first.seq}, ${first.event.time}): earlier records of the range are not shown`);
  } else result.boundaries.push(`seq ${first.seq} (${first.event.time}) precedes the range`);
  let lastIn = -1;
  main.forEach((r, i) => {
    if (inRange(r.event, range)) lastIn = i;
  });
  const after = lastIn >= 0 ? main.slice(lastIn + 1) : [];
  // Any record after the range's last one ends it, whichever side of the range its time lies: after a
  // clock stepped back the records that follow (the signing checkpoint included) are dated before it.
  // That the range has no later record elsewhere in the log is the maker's signed range_seq, checked below.
  if (after.length > 0) {
    const later = after.find((r) => r.event.time > range.until);
    result.boundaries.push(later ? `seq ${later.seq} follows the range` : `seq ${after[0].seq} follows the range (dated before it: the clock was stepped back)`);
  } else if (lastIn === main.length - 1 && main[lastIn].seq === manifest.log_head_seq) {
    // Only a head kept off the gateway's host tells the newest record from the last one of a log cut back.
    const witnessed = typeof manifest.witnessed_head_seq === 'number' ? `, which reaches the newest head a witness held (seq ${manifest.witnessed_head_seq})` : '; no witness was checked, so a log cut back could not be told';
    result.boundaries.push(`the range reaches the log's newest record (seq ${manifest.log_head_seq}) when the bundle was made${witnessed}`);
  } else problem('incomplete', `the chain ends inside the range (seq ${main[main.length - 1].seq}): later records of the range are not shown`);
  if (lastIn >= 0 && manifest.range_seq && manifest.range_seq.last !== main[lastIn].seq) {
    problem('incomplete', `the manifest says the range's last record is seq ${manifest.range_seq.last}, the chain's is seq ${main[lastIn].seq}: records of the range are not shown`);
  }
  for (const run of runs.slice(1)) for (const r of run) if (inRange(r.event, range)) problem('incomplete', `record seq ${r.seq} of the range lies outside the covered interval`);

  // 5. Recordings: every one a selected event names is here, with the bytes the manifest's hash says, and
  // with the SHA-256 its recording.stored event logged when it was uploaded (or, never uploaded, its
  // recording.closed when the gateway closed the file): the manifest only says what the maker read, the
  // signed chain what was stored (object storage and local disk can be written without the audit key).
  const listed = new Map(manifest.files.map((f) => [f.path, f]));
  const unavailable = new Set(Array.isArray(manifest.recordings_unavailable) ? manifest.recordings_unavailable : []);
  const notStored = Array.isArray(manifest.recordings_not_stored) ? new Set(manifest.recordings_not_stored) : undefined;
  const storedEvents = new Map<string, ChainRecord>();
  const closedEvents = new Map<string, ChainRecord>();
  for (const r of chain) {
    const d = r.event.details as { recording?: unknown; sha256?: unknown } | undefined;
    if (typeof d?.recording !== 'string' || typeof d.sha256 !== 'string') continue;
    if (r.event.type === 'recording.stored') storedEvents.set(d.recording, r);
    else if (r.event.type === 'recording.closed') closedEvents.set(d.recording, r);
  }
  const named = new Set<string>();
  for (const e of events) {
    for (const id of recordingIdsOf(e.event.details)) {
      if (named.has(id)) continue;
      named.add(id);
      const name = RECORDINGS_PREFIX + id;
      const m = members.get(name);
      const f = listed.get(name);
      if (!m) {
        if (!unavailable.has(id)) problem('recording', `recording ${id} (named by event seq ${e.seq}) is missing from the bundle`);
        continue;
      }
      result.recordings++;
      if (!f || f.sha256 !== m.sha256 || f.bytes !== m.bytes) problem('recording', `recording ${id} does not match its SHA-256 in the manifest: swapped or altered`);
      // recordings_not_stored still lists the ones without recording.stored (bundles stay readable by older verifiers).
      const s = storedEvents.get(id) ?? closedEvents.get(id);
      if (s) {
        const d = s.event.details as { sha256: string; bytes?: unknown };
        const when = s.event.type === 'recording.stored' ? 'when it was uploaded' : 'when the gateway closed it';
        if (d.sha256 !== m.sha256 || (typeof d.bytes === 'number' && d.bytes !== m.bytes)) {
          problem('recording', `recording ${id} does not match the SHA-256 its ${s.event.type} event (seq ${s.seq}) logged ${when} (${d.sha256}, ${String(d.bytes)} bytes; the archive holds ${m.sha256}, ${m.bytes} bytes): altered or replaced in storage`);
        } else result.recordingsStored++;
      }
      if (!storedEvents.has(id) && notStored && !notStored.has(id)) {
        problem('recording', `recording ${id}: the manifest does not list it among recordings_not_stored, yet chain.jsonl holds no recording.stored event for it`);
      }
    }
  }
  for (const [name] of members) if (name.startsWith(RECORDINGS_PREFIX) && !named.has(name.slice(RECORDINGS_PREFIX.length))) problem('manifest', `${name} is in the archive but no selected event names it`);

  // 6. The manifest: signed by the key, and saying what the archive holds.
  if (!checkManifestSignature(key, manifestBytes, text(FILES.signature))) {
    problem('manifest', `the manifest signature does not verify with audit key ${result.keyId}: the manifest was altered or signed by another key`);
  }
  const namedFingerprint = manifest.gateway?.audit_key_fingerprint;
  if (namedFingerprint !== undefined && namedFingerprint !== result.keyFingerprint) {
    problem('manifest', `the manifest names audit key SHA256 ${String(namedFingerprint)}, the bundle's key is SHA256 ${result.keyFingerprint}`);
  }
  for (const [name, m] of members) {
    if (name === FILES.manifest || name === FILES.signature || name.startsWith(RECORDINGS_PREFIX)) continue;
    const f = listed.get(name);
    if (!f) problem('manifest', `${name} is in the archive but not in the manifest`);
    else if (f.sha256 !== m.sha256 || f.bytes !== m.bytes) problem('manifest', `${name} does not match its SHA-256 in the manifest`);
  }
  for (const f of manifest.files) if (!members.has(f.path)) problem('manifest', `${f.path} is listed in the manifest but not in the archive`);
  const c = manifest.counts ?? ({} as BundleManifest['counts']);
  const derived = { events: events.length, chain_records: chain.length, checkpoints: result.checkpoints, recordings: result.recordings };
  for (const k of Object.keys(derived) as (keyof typeof derived)[]) {
    if (c[k] !== derived[k]) problem('manifest', `the manifest counts ${c[k]} ${k.replace('_', ' ')}, the archive holds ${derived[k]}`);
  }
  if (manifest.chain_seq.last !== main[main.length - 1].seq) problem('manifest', `the manifest says the chain ends at seq ${manifest.chain_seq.last}, it ends at seq ${main[main.length - 1].seq}`);
  return finish();
}
