import type { AppendCallback, AppendOptions, AppendReceipt, AuditSink } from '../../../recorder/types.ts';
import type { AuditEvent } from '../../events/envelope.ts';

/**
 * The primary's audit writer as its EventBus sees it (gateway.workers > 1): the same sink, plus the events
 * the workers recorded, which reach the bus's observers (alerts, metrics, live streams) the way events of
 * CLI processes do, once durable.
 */
export class WithWorkerEvents implements AuditSink {
  private readonly listeners = new Set<(e: AuditEvent) => void>();
  constructor(private readonly inner: AuditSink) {}

  append(event: AuditEvent, opts?: AppendOptions): Promise<AppendReceipt> {
    return this.inner.append(event, opts);
  }
  appendLater<C>(event: AuditEvent, callback: AppendCallback<C>, context: C): void {
    if (this.inner.appendLater) return this.inner.appendLater(event, callback, context);
    this.inner.append(event).then(
      () => callback(undefined, event, context),
      (e: Error) => callback(e, event, context),
    );
  }
  onForeignEvent(listener: (event: AuditEvent) => void): () => void {
    const off = this.inner.onForeignEvent?.(listener);
    this.listeners.add(listener);
    return () => {
      off?.();
      this.listeners.delete(listener);
    };
  }
  noteRefusedSession(): void {
    this.inner.noteRefusedSession?.();
  }
  get healthy(): boolean {
    return this.inner.healthy;
  }
  get failure(): Error | undefined {
    return this.inner.failure;
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** A worker's event is durable: tell the observers. */
  readonly publish = (e: AuditEvent): void => {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        // A broken observer must never affect recording.
      }
    }
  };
}
