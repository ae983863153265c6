import { readSecret, type SecretRef } from '../../src/config/types.ts';
import type { RecordingStore } from '../types.ts';
import { openRecordingStore } from './index.ts';
import type { UploadHooks } from './s3.ts';

/** `recording.storage` as parsed (src/config/schema.ts). */
export type RecordingStorageConfig =
  | { kind: 'local' }
  | {
      kind: 's3';
      bucket: string;
      prefix: string;
      endpoint?: string;
      region: string;
      force_path_style: boolean;
      access_key_id?: SecretRef;
      secret_access_key?: SecretRef;
      part_size: number;
      flush_interval: number;
      max_concurrent_requests: number;
      request_timeout: number;
      retry: { attempts: number; base_delay: number; max_delay: number };
      keep_local: boolean;
      /** Optional here: a config parsed before it existed (and the CLI, which never salvages) has none. */
      salvage_after?: number;
    };

/**
 * The recording store of a gateway or CLI process: local files, and with `kind: s3` the object storage
 * they are uploaded to (the gateway passes hooks that record the outcome; the CLI only reads).
 * Credentials are read from their references here, once; an unset variable fails naming the variable.
 * The S3 code (and the AWS SDK) is imported only when the storage is s3.
 */
export async function openConfiguredRecordings(dir: string, storage: RecordingStorageConfig, hooks: UploadHooks = {}): Promise<RecordingStore> {
  if (storage.kind !== 's3') return openRecordingStore(dir);
  // Loaded only here: the AWS SDK is large, and local storage (the default) never needs it.
  const { S3Recordings } = await import('./s3.ts');
  const credentials =
    storage.access_key_id && storage.secret_access_key
      ? { accessKeyId: readSecret(storage.access_key_id), secretAccessKey: readSecret(storage.secret_access_key) }
      : undefined;
  const remote = new S3Recordings(
    {
      bucket: storage.bucket,
      prefix: storage.prefix,
      endpoint: storage.endpoint,
      region: storage.region,
      forcePathStyle: storage.force_path_style,
      credentials,
      partSize: storage.part_size,
      flushIntervalMs: storage.flush_interval,
      maxConcurrentRequests: storage.max_concurrent_requests,
      requestTimeoutMs: storage.request_timeout,
      retry: { attempts: storage.retry.attempts, baseDelayMs: storage.retry.base_delay, maxDelayMs: storage.retry.max_delay },
      keepLocal: storage.keep_local,
      salvageAfterMs: storage.salvage_after,
    },
    hooks,
  );
  return openRecordingStore(dir, { remote });
}
