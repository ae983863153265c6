import type { Logger } from 'pino';
import type { EventBus } from '../events/bus.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR } from '../events/envelope.ts';
import type { UploadReport } from '../../recorder/recordings/s3.ts';

/** Upload outcomes as audit events (recording.stored / recording.upload_failed), attached to the session. */
export function recordingUploadEvents(events: EventBus, log: Logger) {
  const emit = (type: 'recording.stored' | 'recording.upload_failed', r: UploadReport) => {
    const details: Record<string, unknown> = { recording: r.id, channel: r.channel, bucket: r.bucket, key: r.key, bytes: r.bytes, failures: r.failures };
    if (r.sha256) details.sha256 = r.sha256;
    if (r.parts !== undefined) details.parts = r.parts;
    if (r.localRemoved !== undefined) details.local_removed = r.localRemoved;
    if (r.phase) details.phase = r.phase;
    if (r.error) details.error = r.error;
    if (r.localPath) details.local_path = r.localPath;
    if (r.salvaged) details.salvaged = true;
    events
      .emit({ type, outcome: type === 'recording.stored' ? 'success' : 'failure', actor: SYSTEM_ACTOR as never, source: LOCAL_SOURCE, target: { name: r.bucket, protocol: 's3' }, session_id: r.sessionId, details })
      .catch((e) => log.error({ err: (e as Error).message, recording: r.id }, `${type} event could not be written`));
  };
  return {
    stored: (r: UploadReport) => emit('recording.stored', r),
    failed: (r: UploadReport) => {
      log.error({ recording: r.id, bucket: r.bucket, key: r.key, code: r.error?.code, error: r.error?.message, local_path: r.localPath }, 'recording upload keeps failing; the local copy is kept and uploading goes on');
      emit('recording.upload_failed', r);
    },
    warn: (msg: string, details: Record<string, unknown>) => log.warn(details, msg),
  };
}

