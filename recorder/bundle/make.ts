import type { RecordingSource } from '../types.ts';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { Readable, Transform, type Writable } from 'node:stream';
import tar from 'tar-stream';
import { VigilError } from '../../src/errors.ts';
import { keyId, parseSegmentName, type SignedHead } from '../audit/record.ts';
import { listSegments, splitSegment } from '../audit/segments.ts';
import { readAnchorFile } from '../audit/anchor.ts';
import { verifyAuditLog } from '../audit/verify.ts';
import {
  BUNDLE_FORMAT, FILES, RECORDINGS_PREFIX, isSafeRecordingId, keyFingerprint, recordingIdsOf, sha256, signManifest,
  type BundleFilter, type BundleManifest, type ManifestFile,
} from './format.ts';
import { boundTime, bundleSelects, inRange, parseChainLine, type ChainRecord } from './select.ts';

export class BundleError extends VigilError {
  constructor(message: string) {
    super('VIGIL_BUNDLE', message);
  }
}

export interface MakeBundleOptions {
  auditDir: string;
  recordingsDir: string;
  /** Recordings not in recordingsDir any more are looked up here (object storage, recording.storage s3). */
  recordings?: { open(id: string): Promise<RecordingSource | undefined> };
  /** The audit signing key (PKCS#8 PEM): it signs the manifest, as it signs the log's checkpoints. */
  signingKeyFile: string;
  /** Inclusive bounds: event times (microseconds, as `parseIsoBound` gives them) or Dates (see boundTime). */
  since: Date | string;
  until: Date | string;
  filter: BundleFilter;
  createdBy: { user: string; host: string };
  gateway: { host: string; data_dir: string; version: string };
  /** The replica whose chain auditDir is (DATA/replica-id), and whether other replicas share the store and
   *  record their own chains: the bundle covers this one's only. */
  chainOf?: { replica: string; store_shared: boolean };
  /**
   * Signed heads kept off this host (`audit.witness`, `--witness`): the log must reach the newest, or it was
   * cut back (with its head.json) and a bundle would present the cut log's last record as the newest.
   */
  witnesses?: { head: SignedHead; source: string }[];
  now?: Date;
}

export interface MadeBundle {
  manifest: BundleManifest;
  /** SHA-256 of manifest.json: what the audit.bundle event records. */
  manifestSha256: string;
}

/** The chain as the bundle will hold it: the main run (boundary record … covering checkpoint) and, after a purge, the run vouching for the anchor. */
interface ChainSelection {
  main: ChainRecord[];
  purgeRun: ChainRecord[];
  rangeFirst: number;
  rangeLast: number;
  logHead: number;
  purge?: { anchor_seq: number; purged_event_seq: number };
  /** The last `recording.stored` of each recording id anywhere in the log: the hash the upload logged. */
  stored: Map<string, StoredRecording>;
  /** The last `recording.closed` of each: the hash of the file the gateway closed (a recording kept locally). */
  closed: Map<string, StoredRecording>;
  /** Cut the main run again so that it also reaches `seq` (ending on the first checkpoint after it). */
  extendTo(seq: number): void;
}

/** What a `recording.stored` event says of a recording in object storage (or `recording.closed` of its file). */
interface StoredRecording {
  type: 'recording.stored' | 'recording.closed';
  seq: number;
  sha256: string;
  bytes: number;
  where: string;
}

function storedOf(r: ChainRecord): [string, StoredRecording] | undefined {
  const type = r.event.type;
  if (type !== 'recording.stored' && type !== 'recording.closed') return undefined;
  const d = (r.event.details ?? {}) as Record<string, unknown>;
  if (typeof d.recording !== 'string' || typeof d.sha256 !== 'string') return undefined;
  const where = type === 'recording.stored' ? `s3://${String(d.bucket)}/${String(d.key)}` : 'the file the gateway closed';
  return [d.recording, { type, seq: r.seq, sha256: d.sha256, bytes: Number(d.bytes), where }];
}

const isCheckpoint = (r: ChainRecord) => r.event.type === 'audit.checkpoint';

/**
 * Read the log once, oldest first, keeping records from the one just before the first record of the range
 * (the boundary that shows nothing earlier belongs to it) to the end, then cut after the first checkpoint
 * that signs the last record of the range.
 */
function selectChain(auditDir: string, range: { since: string; until: string }): ChainSelection {
  let segments = listSegments(auditDir);
  const anchorFile = readAnchorFile(auditDir);
  let anchorRecord: ChainRecord | undefined;
  if (anchorFile) {
    const parsed = parseChainLine(anchorFile.record);
    if (typeof parsed === 'string') throw new BundleError(`anchor.json: ${parsed}`);
    anchorRecord = parsed;
    const next = (parsed.event.details as { next_segment?: string } | undefined)?.next_segment;
    const firstKept = next ? parseSegmentName(next)?.firstSeq ?? 0 : 0;
    // Segments a crash left behind mid-purge are not part of the chain any more (as in verify).
    segments = segments.filter((n) => parseSegmentName(n)!.firstSeq >= firstKept);
  }
  let before: ChainRecord | undefined;
  const kept: ChainRecord[] = [];
  let rangeFirst = 0;
  let rangeLast = 0;
  let logHead = 0;
  const stored = new Map<string, StoredRecording>();
  const closed = new Map<string, StoredRecording>();
  for (const segment of segments) {
    const { lines } = splitSegment(fs.readFileSync(path.join(auditDir, segment), 'utf8'));
    for (const line of lines) {
      const r = parseChainLine(line);
      if (typeof r === 'string') throw new BundleError(`${segment}: ${r}`);
      logHead = r.seq;
      const s = storedOf(r);
      if (s) (s[1].type === 'recording.stored' ? stored : closed).set(s[0], s[1]);
      const hit = inRange(r.event, range);
      if (hit) {
        if (!rangeFirst) rangeFirst = r.seq;
        rangeLast = r.seq;
      }
      if (rangeFirst) kept.push(r);
      else before = r;
    }
  }
  if (!rangeFirst) throw new BundleError(`no audit records between ${range.since} and ${range.until}`);
  let purge: ChainSelection['purge'];
  const main: ChainRecord[] = [];
  if (before) main.push(before);
  else if (rangeFirst !== 1) {
    // The range reaches back past a retention purge: the anchor checkpoint is the boundary.
    if (!anchorRecord || anchorRecord.seq !== rangeFirst - 1) throw new BundleError(`the log starts at seq ${rangeFirst} without a retention anchor before it; run vigil audit verify`);
    main.push(anchorRecord);
    const purged = kept.find((r) => r.event.type === 'audit.purged' && (r.event.details as { last_seq?: number } | undefined)?.last_seq === anchorRecord!.seq);
    if (!purged) throw new BundleError(`no audit.purged event vouches for the retention anchor (seq ${anchorRecord.seq}); run vigil audit verify`);
    purge = { anchor_seq: anchorRecord.seq, purged_event_seq: purged.seq };
  }
  const head = main.slice();
  const sel: ChainSelection = { main, purgeRun: [], rangeFirst, rangeLast, logHead, purge, stored, closed, extendTo: () => {} };
  const cut = (upTo: number, what: string) => {
    const cover = kept.findIndex((r) => r.seq > upTo && isCheckpoint(r));
    const headIsCheckpoint = kept[kept.length - 1].seq === upTo && isCheckpoint(kept[kept.length - 1]);
    if (cover < 0 && !headIsCheckpoint) {
      throw new BundleError(`seq ${upTo}, ${what}, is not signed by a checkpoint yet; wait for the next one (audit.checkpoint_interval) and run this again`);
    }
    sel.main = [...head, ...kept.slice(0, cover < 0 ? kept.length : cover + 1)];
    sel.purgeRun = [];
    if (purge && purge.purged_event_seq > sel.main[sel.main.length - 1].seq) {
      const from = kept.findIndex((r) => r.seq === purge.purged_event_seq);
      const to = kept.findIndex((r, i) => i > from && isCheckpoint(r));
      if (to < 0) throw new BundleError(`the audit.purged event (seq ${purge.purged_event_seq}) is not signed by a checkpoint yet; wait for the next one and run this again`);
      sel.purgeRun = kept.slice(from, to + 1);
    }
  };
  cut(rangeLast, 'the last record of the range');
  sel.extendTo = (seq) => {
    if (seq > sel.main[sel.main.length - 1].seq) cut(seq, 'the recording.stored or recording.closed event a bundled recording is checked against');
  };
  return sel;
}

function verifyText(manifest: { key_id: string; fingerprint: string; chainOf?: MakeBundleOptions['chainOf'] }): string {
  const c = manifest.chainOf;
  const scope = !c ? [] : [
    `It covers the audit chain of replica ${c.replica} only${c.store_shared ? ': other replicas share its state store and record their own' : ''}`,
    ...(c.store_shared ? ['chains, so events they recorded are not in it (make a bundle on each replica).'] : []),
    '',
  ];
  return [
    'Vigil evidence bundle',
    '',
    'Verify it (no data directory, configuration or account needed):',
    '    vigil audit verify-bundle THIS.tar [--key AUDIT_KEY.pub-you-trust|SHA256-FINGERPRINT]',
    '',
    `It is signed by the audit key (audit_signing.pub in this archive; key id ${manifest.key_id}) whose SHA-256`,
    `fingerprint is ${manifest.fingerprint}. The archive proves itself consistent with that key:`,
    'compare the whole fingerprint with the one the gateway operator publishes (the short key id is not enough),',
    'or pass that fingerprint or the key you already hold with --key.',
    '',
    ...scope,
    'events.jsonl   the selected audit records, exactly as in the log',
    'chain.jsonl    every record of the covered interval: proves the selection is unaltered and complete',
    'recordings/    the session recordings the selected events name',
    'manifest.json  filter, range, counts, gateway identity, SHA-256 of every file (manifest.sig signs it)',
    '',
  ].join('\n');
}

/** A pass-through that hashes and counts what flows through it. */
function hashing(): Transform & { digest: () => { sha256: string; bytes: number } } {
  const h = crypto.createHash('sha256');
  let bytes = 0;
  const t = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
  });
  return Object.assign(t, { digest: () => ({ sha256: h.digest('hex'), bytes }) });
}

/**
 * Write an evidence bundle (a tar) to `out`. The log must verify first (a bundle of a tampered log would
 * only prove the tampering consistent). Resolves once everything was handed to `out`.
 */
export async function makeBundle(o: MakeBundleOptions, out: Writable): Promise<MadeBundle> {
  const privateKey = crypto.createPrivateKey(fs.readFileSync(o.signingKeyFile));
  const publicKey = crypto.createPublicKey(privateKey);
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const checked = verifyAuditLog(o.auditDir, publicPem, { witnesses: o.witnesses ?? [] });
  if (checked.status === 'invalid' && checked.firstBad?.kind === 'no-checkpoint') {
    // A young log (its writer has not reached audit.checkpoint_interval yet) looks like this, and so does
    // one whose checkpoints were stripped: say both, and refuse either way.
    throw new BundleError(`the audit log (${checked.records} records) is not signed by a checkpoint yet; if the gateway started less than audit.checkpoint_interval ago, wait for its first one and run this again, otherwise its checkpoints are missing and the log does not verify; no bundle was made`);
  }
  if (checked.status === 'invalid') {
    throw new BundleError(`the audit log does not verify (${checked.firstBad?.problem ?? 'invalid'}); no bundle was made`);
  }
  if (checked.records === 0) throw new BundleError('the audit log is empty');
  let range: { since: string; until: string };
  try {
    range = { since: boundTime(o.since, 'since'), until: boundTime(o.until, 'until') };
  } catch (e) {
    throw new BundleError((e as Error).message);
  }
  if (range.since > range.until) throw new BundleError(`--since (${range.since}) is after --until (${range.until})`);
  const sel = selectChain(o.auditDir, range);
  const selects = bundleSelects(o.filter, range);
  // Only records of the range are selected: extending the chain below changes no selection.
  const selected = sel.main.filter((r) => selects(r.event));

  const recordingIds: string[] = [];
  for (const r of selected) for (const id of recordingIdsOf(r.event.details)) if (!recordingIds.includes(id)) recordingIds.push(id);
  const available: string[] = [];
  const unavailable: string[] = [];
  const remote = new Map<string, RecordingSource>();
  for (const id of recordingIds) {
    if (isSafeRecordingId(id) && fs.statSync(path.join(o.recordingsDir, id), { throwIfNoEntry: false })?.isFile()) available.push(id);
    else if (isSafeRecordingId(id) && o.recordings) {
      // Uploaded and removed locally: streamed from object storage into the bundle (never whole in memory).
      // Only "not found" means the recording is gone (recordings_unavailable says purged): a refusal, a
      // timeout or an outage says nothing of that, and the bundle is not made.
      let source: RecordingSource | undefined;
      try {
        source = await o.recordings.open(id);
      } catch (e) {
        throw new BundleError(`recording ${id} could not be read from object storage (${(e as Error).message}); that does not show it is gone, so no bundle was made: run this again once the storage answers`);
      }
      if (source) {
        remote.set(id, source);
        available.push(id);
      } else unavailable.push(id);
    } else unavailable.push(id);
  }
  // Each recording uploaded to object storage must be the one whose SHA-256 its recording.stored event
  // logged (bytes in storage or a local copy can be replaced by whoever can write there, the signed log
  // cannot): the chain reaches that event, so the verifier can check it too. One never uploaded is checked
  // against the hash recording.closed logged when the gateway closed its file.
  const loggedHash = (id: string) => sel.stored.get(id) ?? sel.closed.get(id);
  for (const id of available) {
    const s = loggedHash(id);
    if (s) sel.extendTo(s.seq);
  }
  const chainRecords = [...sel.main, ...sel.purgeRun];
  // Said in the manifest: recordings the verifier cannot check against a recording.stored (none, or one
  // logged before the covered interval: the maker still checks those against the log).
  const notStored = available.filter((id) => !chainRecords.some((r) => r.seq === sel.stored.get(id)?.seq));
  const checkStored = (id: string, got: { sha256: string; bytes: number }, from: string) => {
    const s = loggedHash(id);
    if (s && (s.sha256 !== got.sha256 || s.bytes !== got.bytes)) {
      throw new BundleError(
        `recording ${id} (${from}) does not match what ${s.type} (seq ${s.seq}) logged for ${s.where}: SHA-256 ${got.sha256} (${got.bytes} bytes), logged ${s.sha256} (${s.bytes} bytes); it was altered or replaced after ${s.type === 'recording.stored' ? 'it was stored' : 'the gateway closed it'}, so no bundle was made`,
      );
    }
  };

  const created = (o.now ?? new Date()).toISOString();
  const mtime = new Date(created);
  const kid = keyId(publicKey);
  const pack = tar.pack();
  // `out` is not ended here: the caller finishes (fsyncs) its file.
  (pack as unknown as Readable).pipe(out, { end: false });
  const packed = once(pack, 'end');
  // Awaited once everything is added; when making fails before that (the caller discards `out`), the
  // archive's own end or error is nobody's concern.
  packed.catch(() => {});
  const files: ManifestFile[] = [];
  const addBuffer = async (name: string, data: Buffer, listed = true) => {
    if (listed) files.push({ path: name, sha256: sha256(data), bytes: data.length });
    await new Promise<void>((resolve, reject) => pack.entry({ name, size: data.length, mtime, mode: 0o644 }, data, (e) => (e ? reject(e) : resolve())));
  };
  await addBuffer(FILES.publicKey, Buffer.from(publicPem));
  await addBuffer(FILES.chain, Buffer.from(chainRecords.map((r) => r.line + '\n').join('')));
  await addBuffer(FILES.events, Buffer.from(selected.map((r) => r.line + '\n').join('')));
  await addBuffer(FILES.verify, Buffer.from(verifyText({ key_id: kid, fingerprint: keyFingerprint(publicKey), chainOf: o.chainOf })));
  try {
    for (const id of available) {
      const stored = remote.get(id);
      if (stored) {
        const name = RECORDINGS_PREFIX + id;
        const h = hashing();
        const entry = pack.entry({ name, size: stored.size, mtime, mode: 0o644 });
        await pipeline(stored.size > 0 ? stored.read(0, stored.size - 1) : Readable.from([]), h, entry);
        const got = h.digest();
        checkStored(id, got, stored.where?.kind === 's3' ? `s3://${stored.where.bucket}/${stored.where.key}` : 'object storage');
        files.push({ path: name, ...got });
        continue;
      }
      // The size is fixed when the file is opened: a recording still being written is taken as it stands.
      const fd = fs.openSync(path.join(o.recordingsDir, id), 'r');
      try {
        const size = fs.fstatSync(fd).size;
        const name = RECORDINGS_PREFIX + id;
        const h = hashing();
        const entry = pack.entry({ name, size, mtime, mode: 0o644 });
        const source = size > 0 ? fs.createReadStream('', { fd, start: 0, end: size - 1, autoClose: false }) : Readable.from([]);
        await pipeline(source, h, entry);
        const got = h.digest();
        checkStored(id, got, `local copy ${path.join(o.recordingsDir, id)}`);
        files.push({ path: name, ...got });
      } finally {
        fs.closeSync(fd);
      }
    }
  } catch (e) {
    // Nothing more goes to `out`: the caller discards the file (a tar cut short is no bundle).
    pack.destroy();
    throw e;
  }
  const manifest: BundleManifest = {
    format: BUNDLE_FORMAT,
    created,
    created_by: o.createdBy,
    gateway: { ...o.gateway, audit_key_id: kid, audit_key_fingerprint: keyFingerprint(publicKey) },
    ...(o.chainOf ? { chain_of: o.chainOf } : {}),
    filter: Object.fromEntries(Object.entries(o.filter).filter(([, v]) => v !== undefined)),
    range,
    range_seq: { first: sel.rangeFirst, last: sel.rangeLast },
    chain_seq: { first: sel.main[0].seq, last: sel.main[sel.main.length - 1].seq },
    log_head_seq: sel.logHead,
    ...(checked.witnessedSeq !== undefined ? { witnessed_head_seq: checked.witnessedSeq } : {}),
    ...(sel.purge ? { purge: sel.purge } : {}),
    counts: {
      events: selected.length,
      chain_records: chainRecords.length,
      checkpoints: chainRecords.filter(isCheckpoint).length,
      recordings: available.length,
    },
    recordings_unavailable: unavailable,
    recordings_not_stored: notStored,
    files,
  };
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  await addBuffer(FILES.manifest, manifestBytes, false);
  await addBuffer(FILES.signature, Buffer.from(signManifest(privateKey, manifestBytes) + '\n'), false);
  pack.finalize();
  await Promise.race([packed, once(out, 'error').then(([e]) => Promise.reject(e as Error))]);
  return { manifest, manifestSha256: sha256(manifestBytes) };
}
