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
    return m;
  } catch {
    return undefined;
  }
}
