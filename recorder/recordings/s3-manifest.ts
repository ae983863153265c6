/**
 * The objects an S3 recording upload keeps beside its key while it runs (recordings/s3.ts), which
 * another replica reads to complete the upload of a lost one (s3-salvage.ts).
 */
/** Beside the object key: `<key>.pending/<offset, 16 digits>`, the bytes after the last part (s3.ts). */
export const PENDING = '.pending/';
/**
 * Beside the object key while its multipart upload runs: `<key>.upload`, a small JSON manifest (upload id,
 * the parts so far with their ETags and end offsets), written when the upload starts, after every part and
 * at least every quarter of `salvage_after` meanwhile (a heartbeat). S3 keeps an incomplete upload's parts
 * out of sight; the manifest is how another replica finds and completes the upload of a lost one.
 */
export const MANIFEST = '.upload';

export interface UploadManifest {
  version: 1;
  upload_id: string;
  session: string;
  channel: number;
  parts: { n: number; etag: string; end: number }[];
  /**
   * Set by a replica about to salvage the upload (s3-salvage.ts): which one (`by`) and when (`at`, epoch
   * ms). The uploader never writes it: a heartbeat (it was alive after all) clears it.
   */
  claim?: { by: string; at: number };
  /**
   * Earlier multipart uploads of the same recording that this one replaces (a restarted or resumed
   * upload starts a new one from the local file): aborted once this upload is completed, by its uploader,
   * a salvaging replica or retention. Carried here so that no upload id vigil opened is ever forgotten
   * while its parts (recording bytes) are still in S3.
   */
  abandoned?: string[];
}

/**
 * The objects vigil writes under its prefix, and the only ones it ever deletes: `<session>/ch<N>.cast`
 * (the recording), `….cast.upload` (the manifest) and `….cast.pending/<16 digits>` (pending pieces).
 * Groups: session, channel, what follows `.cast` ('' for the recording).
 */
export const RECORDING_KEY = /^([A-Za-z0-9_-]+)\/ch(\d+)\.cast(|\.upload|\.pending\/\d{16})$/;

/** A key prefix as a folder: `recordings` means `recordings/` (never also `recordings-old/…`). */
export function folderPrefix(prefix: string): string {
  return prefix === '' || prefix.endsWith('/') ? prefix : prefix + '/';
}

export function parseManifest(text: string): UploadManifest | undefined {
  try {
    const m = JSON.parse(text) as UploadManifest;
    if (m?.version !== 1 || typeof m.upload_id !== 'string' || typeof m.session !== 'string' || !Number.isInteger(m.channel) || !Array.isArray(m.parts)) return undefined;
    for (const [i, p] of m.parts.entries()) {
      if (p?.n !== i + 1 || typeof p.etag !== 'string' || !Number.isSafeInteger(p.end) || p.end <= (i ? m.parts[i - 1].end : 0)) return undefined;
    }
    // A malformed claim is no claim: the upload stays salvageable.
    if (m.claim !== undefined && (typeof m.claim?.by !== 'string' || !Number.isSafeInteger(m.claim.at))) delete m.claim;
    if (m.abandoned !== undefined && (!Array.isArray(m.abandoned) || m.abandoned.some((id) => typeof id !== 'string'))) return undefined;
    return m;
  } catch {
    return undefined;
  }
}

/**
 * The manifest `text` if it is one vigil wrote for the recording `id` (`<session>/ch<N>.cast`): it parses,
 * and names that session and channel (what a recording.stored event will name). Anything else under a
 * manifest's name is not vigil's to act on.
 */
export function manifestFor(text: string | undefined, id: string): UploadManifest | undefined {
  const m = text === undefined ? undefined : parseManifest(text);
  const named = RECORDING_KEY.exec(id);
  if (!m || !named || named[3] !== '' || named[1] !== m.session || Number(named[2]) !== m.channel) return undefined;
  return m;
}
