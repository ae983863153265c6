/** Upload outcomes as the recording store reports them (recordings/s3.ts, s3-salvage.ts) to the gateway. */

/** What the gateway records when an upload completes or keeps failing (events are its business). */
export interface UploadReport {
  sessionId: string;
  channel: number;
  id: string;
  bucket: string;
  key: string;
  bytes: number;
  sha256?: string;
  parts?: number;
  /** Failed requests before this outcome (0: the first try of each request worked). */
  failures: number;
  /** Failures: where the recording is kept meanwhile, what failed and why (credentials removed). */
  localPath?: string;
  phase?: 'session' | 'complete' | 'salvage';
  error?: { code: string; message: string };
  localRemoved?: boolean;
  /** Completed by another process than the one that recorded it (that one was lost), from what reached S3. */
  salvaged?: boolean;
}

export interface UploadHooks {
  stored?(r: UploadReport): void;
  failed?(r: UploadReport): void;
  /** Operational log lines (never credentials). */
  warn?(msg: string, details: Record<string, unknown>): void;
}
