import type { AppendCallback, AppendOptions, AppendReceipt, AuditSink } from '../../../recorder/types.ts';
import type { AuditEvent } from '../../events/envelope.ts';
import { AuditUnavailableError, VigilError } from '../../errors.ts';
import type { EventItem, PrimaryMessage, WorkerMessage } from './messages.ts';

/**
 * Fire-and-forget records (statements in batched mode) wait this long for company before they are sent:
 * fewer, larger messages under load. Nobody waits for them (they are durable at the primary's next
 * background commit, itself up to audit.background_commit_window away); an awaited or strict append in
 * the same batch sends it at once.
 */
const LATER_FLUSH_MS = 2;

interface Waiting {
  event: AuditEvent;
  resolve?: (r: AppendReceipt) => void;
  reject?: (e: Error) => void;
  callback?: AppendCallback<unknown>;
  context?: unknown;
}

function failureOf(code: string, message: string): Error {
  return code === 'VIGIL_AUDIT_UNAVAILABLE' ? new AuditUnavailableError(message) : new VigilError(code, message);
}

/**
 * The audit sink of a cluster worker (gateway.workers > 1): the gateway keeps one chain, written by the
 * primary. Events recorded within one tick go to the primary in one message; each append settles when the
 * primary acknowledges that its record is durable (or could not be written: the caller fails closed, as
 * with the local writer). The envelope (id, time) is made here, in the worker, when the action happens.
 */
export class IpcAuditSink implements AuditSink {
  private seq = 0;
  private batch: EventItem[] = [];
  private readonly waiting = new Map<number, Waiting>();
  private flushScheduled = false;
  private laterTimer: NodeJS.Timeout | undefined;
  private gone: Error | undefined;
  /** The log's health as the primary last said. */
  private reported: { healthy: boolean; failure?: Error } = { healthy: true };
  /** Set while the primary has stopped answering (stopped, or stuck): nothing sent can become durable. */
  private silence: Error | undefined;
  private idle: (() => void) | undefined;

  constructor(private readonly send: (m: WorkerMessage) => void) {}

  append(event: AuditEvent, opts?: AppendOptions): Promise<AppendReceipt> {
    return new Promise((resolve, reject) => this.enqueue(event, opts?.strict === true, false, { event, resolve, reject }));
  }

  appendLater<C>(event: AuditEvent, callback: AppendCallback<C>, context: C): void {
    this.enqueue(event, false, true, { event, callback: callback as AppendCallback<unknown>, context });
  }

  get healthy(): boolean {
    return this.reported.healthy && !this.gone && !this.silence;
  }

  get failure(): Error | undefined {
    return this.gone ?? this.silence ?? this.reported.failure;
  }

  /**
   * The primary stopped answering (worker.ts PRIMARY_SILENT_TICKS): unhealthy until it speaks again, so
   * that no statement is forwarded whose record may never be written. Appends someone awaits (a strict
   * statement held for its record, a decision) fail now rather than wait for an acknowledgement that may
   * never come: the statement is refused with the protocol's error, not left hanging. The primary may
   * still write those records if it answers again: a record without a forward, never the reverse.
   * Fire-and-forget records keep waiting: what they describe already went on, and nobody waits for them.
   */
  primarySilent(err: Error): void {
    this.silence = err;
    for (const [n, w] of [...this.waiting]) {
      if (w.callback) continue;
      this.waiting.delete(n);
      this.settle(w, err);
    }
    if (this.waiting.size === 0) this.idle?.();
  }

  primaryHeard(): void {
    this.silence = undefined;
  }

  noteRefusedSession(): void {
    this.send({ vigil: 'refused_session' });
  }

  private enqueue(event: AuditEvent, strict: boolean, later: boolean, w: Waiting): void {
    if (this.gone) return void this.settle(w, this.gone);
    const n = ++this.seq;
    // While the primary is silent the record is still sent (it may be written when the primary answers),
    // but an awaited append fails at once (see primarySilent).
    if (this.silence && !w.callback) this.settle(w, this.silence);
    else this.waiting.set(n, w);
    const item: EventItem = { n, e: event };
    if (strict) item.s = 1;
    if (later) item.l = 1;
    this.batch.push(item);
    if (this.flushScheduled) return;
    if (!later) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    } else {
      this.laterTimer ??= setTimeout(this.flush, LATER_FLUSH_MS);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.laterTimer) {
      clearTimeout(this.laterTimer);
      this.laterTimer = undefined;
    }
    if (this.batch.length === 0) return;
    const items = this.batch;
    this.batch = [];
    try {
      this.send({ vigil: 'events', items });
    } catch (e) {
      this.disconnected(new AuditUnavailableError(`the gateway primary cannot be reached: ${(e as Error).message}`));
    }
  };

  private settle(w: Waiting, err: Error | undefined, receipt?: AppendReceipt): void {
    if (w.callback) return void w.callback(err, w.event, w.context);
    if (err) w.reject!(err);
    else w.resolve!(receipt!);
  }

  /** Acks and health from the primary. */
  receive(m: PrimaryMessage): void {
    if (m.vigil === 'health' || m.vigil === 'acks') {
      this.reported = m.healthy ? { healthy: true } : { healthy: false, failure: new AuditUnavailableError(m.failure ?? 'the audit log cannot be written') };
    }
    if (m.vigil !== 'acks') return;
    const ok = m.ok;
    for (let i = 0; i < ok.length; i += 3) {
      const n = ok[i] as number;
      const w = this.waiting.get(n);
      if (!w) continue;
      this.waiting.delete(n);
      this.settle(w, undefined, ok[i + 1] === 0 && ok[i + 2] === '' ? undefined : { seq: ok[i + 1] as number, hash: ok[i + 2] as string });
    }
    for (const [n, code, message] of m.failed) {
      const w = this.waiting.get(n);
      if (!w) continue;
      this.waiting.delete(n);
      this.settle(w, failureOf(code, message));
    }
    if (this.waiting.size === 0) this.idle?.();
  }

  /** The primary is gone: nothing can be recorded any more, so every pending and later append fails. */
  disconnected(err: Error = new AuditUnavailableError('the gateway primary is gone; nothing can be recorded')): void {
    this.gone ??= err;
    this.batch = [];
    const all = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of all) this.settle(w, this.gone);
    this.idle?.();
  }

  /** Waits (up to `ms`) until every event sent has been acknowledged. The primary writes the checkpoint. */
  async close(ms = 10_000): Promise<void> {
    this.flush();
    if (this.waiting.size === 0) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.idle = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
}
