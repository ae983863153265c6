import crypto from 'node:crypto';

/**
 * Evidence bundle layout (a ustar archive; see README.md for why each part is there):
 *
 *   audit_signing.pub   the audit public key (SPKI PEM) that signs the checkpoints and the manifest
 *   chain.jsonl         every audit record of the covered seq interval, lines exactly as in the log
 *   events.jsonl        the selected records (a subset of chain.jsonl, same lines)
 *   recordings/<id>     session recordings the selected events name (`recording`, `recordings`)
 *   VERIFY.txt          how to verify, for whoever receives the archive
 *   manifest.json       what was asked for and what is in the archive (files with SHA-256, counts, ranges)
 *   manifest.sig        base64 Ed25519 signature over MANIFEST_DOMAIN + the manifest's bytes
 */
export const BUNDLE_FORMAT = 'vigil-evidence-bundle-v1';
const MANIFEST_DOMAIN = 'vigil-evidence-bundle-manifest-v1\n';

export const FILES = {
  publicKey: 'audit_signing.pub',
  chain: 'chain.jsonl',
  events: 'events.jsonl',
  verify: 'VERIFY.txt',
  manifest: 'manifest.json',
  signature: 'manifest.sig',
} as const;
export const RECORDINGS_PREFIX = 'recordings/';

/** The selection the bundle answers for: the audit search filter, without limit. */
export interface BundleFilter {
  user?: string;
  target?: string;
  type?: string;
  session?: string;
}

export interface ManifestFile {
  path: string;
  sha256: string;
  bytes: number;
}

export interface BundleManifest {
  format: typeof BUNDLE_FORMAT;
  created: string;
  created_by: { user: string; host: string };
  /** `audit_key_id` is the short id that names the key in events and checkpoints; only the full SHA-256
   *  `audit_key_fingerprint` pins it (absent in bundles made before it existed). */
  gateway: { host: string; data_dir: string; version: string; audit_key_id: string; audit_key_fingerprint?: string };
  /** The chain this bundle covers: each replica keeps its own, so with a shared (PostgreSQL) store the
   *  events other replicas recorded are not in it (absent in bundles made before it existed). */
  chain_of?: { replica: string; store_shared: boolean };
  filter: BundleFilter;
  /** Inclusive event-time range (ISO, microseconds as events carry them). */
  range: { since: string; until: string };
  /** First and last seq whose event time lies in the range (any event, selected or not). */
  range_seq: { first: number; last: number };
  /** The seq interval of chain.jsonl (the main run; see `purge` for the second one). */
  chain_seq: { first: number; last: number };
  /** The newest record of the log when the bundle was made. */
  log_head_seq: number;
  /** The newest head a witness kept off the gateway's host held, which the log was checked to reach when the
   *  bundle was made (absent: no witness configured or given, so a log cut back could not be told). */
  witnessed_head_seq?: number;
  /** Set when the range reaches back past a retention purge: chain.jsonl starts at the anchor checkpoint,
   *  and holds a second run from the audit.purged event that vouches for it to the checkpoint after it. */
  purge?: { anchor_seq: number; purged_event_seq: number };
  counts: { events: number; chain_records: number; checkpoints: number; recordings: number };
  /** Recordings named by selected events that no longer exist (e.g. purged by retention). */
  recordings_unavailable: string[];
  /**
   * Recordings in the archive that no recording.stored event in chain.jsonl names (local storage, not
   * uploaded yet, or uploaded before the covered interval: the maker checked those against the log): only
   * this manifest's SHA-256 vouches for them to the verifier. Every other one matches the SHA-256 and size
   * its recording.stored event in chain.jsonl logged. Absent in bundles made before this field existed.
   */
  recordings_not_stored?: string[];
  files: ManifestFile[];
}

export function manifestPayload(manifestBytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from(MANIFEST_DOMAIN), manifestBytes]);
}

export function signManifest(key: crypto.KeyObject, manifestBytes: Buffer): string {
  return crypto.sign(null, manifestPayload(manifestBytes), key).toString('base64');
}

export function checkManifestSignature(key: crypto.KeyObject, manifestBytes: Buffer, sig: string): boolean {
  try {
    return crypto.verify(null, manifestPayload(manifestBytes), key, Buffer.from(sig.trim(), 'base64'));
  } catch {
    return false;
  }
}

/**
 * The full fingerprint of an audit public key: SHA-256 of its SPKI DER, 64 hex. What a verifier pins: the
 * 16-hex `keyId` is 64 bits, short enough for someone holding the data dir to make a key that shares it.
 */
export function keyFingerprint(key: crypto.KeyObject): string {
  return sha256(key.export({ type: 'spki', format: 'der' }));
}

/** `--key` as a fingerprint: 64 hex, optionally written `sha256:…` or with colons (as some tools print it). */
export function parseKeyFingerprint(text: string): string | undefined {
  const hex = text.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

/** A 16-hex key id: names a key, but too short to pin one. */
export const isShortKeyId = (text: string) => /^[0-9a-f]{16}$/i.test(text.trim());

export function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Recording ids a selected event names: `details.recording` (a channel) and `details.recordings` (session.end). */
export function recordingIdsOf(details: Record<string, unknown> | undefined): string[] {
  if (!details) return [];
  const ids: string[] = [];
  if (typeof details.recording === 'string') ids.push(details.recording);
  if (Array.isArray(details.recordings)) for (const r of details.recordings) if (typeof r === 'string') ids.push(r);
  return ids;
}

/** A recording id is a relative path inside the store (`<session>/ch<n>.cast`): nothing that could escape it. */
export function isSafeRecordingId(id: string): boolean {
  return /^[A-Za-z0-9_-]{1,128}\/ch\d{1,6}\.cast$/.test(id);
}

/**
 * `vigil audit verify-bundle` exit codes, one per failure class. When several problems are found all are
 * printed; the exit code is that of the first, in the order the checks run (chain, checkpoints, events,
 * completeness, recordings, manifest), so a forgery is named by what it actually broke.
 */
export const BUNDLE_EXIT_CODES = {
  ok: 0,
  /** An event or chain record differs from what the chain's hashes say (altered). */
  altered: 1,
  /** (2 is the CLI's usage error.) Records missing from the chain: a gap in the sequence. */
  removed: 3,
  /** A record of the range that matches the filter is not among the selected events (withheld). */
  incomplete: 4,
  /** A recording is missing, or its bytes differ from the manifest's hash or from the one its recording.stored event logged (swapped). */
  recording: 5,
  /** A checkpoint is not signed by the bundle's key, or part of the chain is not covered by one. */
  checkpoint: 6,
  /** The manifest's signature is broken, or the manifest disagrees with the archive. */
  manifest: 7,
  /** Not a readable bundle (not a tar, a member missing, malformed lines). */
  unreadable: 8,
  /** The bundle is signed by another key than the one given with --key. */
  wrong_key: 9,
} as const;

export type BundleProblemKind = Exclude<keyof typeof BUNDLE_EXIT_CODES, 'ok'>;
