import crypto from 'node:crypto';
import net from 'node:net';
import { encodeCancelRequest } from './frontend.ts';

/**
 * Gateway-issued cancel keys. The client sees the backend's real process id (so LISTEN/NOTIFY
 * self-filtering, pg_stat_activity lookups and pg_terminate_backend(pg_backend_pid()) work) with a
 * secret the gateway made up; a CancelRequest carrying it (on a new connection, as the protocol wants)
 * is mapped to the real backend key and forwarded. Secrets are random, so a client cannot cancel
 * another session's queries by guessing; two targets whose backends share a pid get distinct secrets,
 * so the lookup (pid and secret together) never crosses.
 */
export interface CancelTarget {
  host: string;
  port: number;
  processId: number;
  secretKey: Buffer;
  /** Called when a cancel for this session is forwarded (for the db.cancel event). */
  onCancel(): void;
}

export class CancelKeys {
  private readonly byKey = new Map<string, CancelTarget>();

  /** Issue a fresh key for `target`; returns the (processId, secretKey) to send to the client. */
  issue(target: CancelTarget): { processId: number; secretKey: Buffer; release(): void } {
    for (;;) {
      const processId = target.processId;
      // Protocol 3.0 keys are 4 bytes (the gateway always negotiates 3.0 with its clients).
      const secretKey = crypto.randomBytes(4);
      const k = key(processId, secretKey);
      if (this.byKey.has(k)) continue;
      this.byKey.set(k, target);
      return { processId, secretKey, release: () => this.byKey.delete(k) };
    }
  }

  find(processId: number, secretKey: Buffer): CancelTarget | undefined {
    return this.byKey.get(key(processId, secretKey));
  }
}

const key = (pid: number, secret: Buffer) => `${pid}:${secret.toString('hex')}`;

/** Send a CancelRequest with the real key to the backend on a fresh connection. */
export function forwardCancel(t: CancelTarget, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: t.host, port: t.port });
    const timer = setTimeout(() => s.destroy(new Error('timed out forwarding the cancel request')), timeoutMs);
    s.once('connect', () => s.end(encodeCancelRequest(t.processId, t.secretKey)));
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    // The server answers nothing and closes.
    s.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.resume();
  });
}
