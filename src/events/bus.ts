import diagnostics from 'node:diagnostics_channel';
import type { AuditSink, AppendReceipt } from '../../recorder/types.ts';
import { createEvent, type AuditEvent, type EventInput } from './envelope.ts';

/** Every written event is also published here, for in-process observers (metrics, live streams, alerts). */
export const eventChannel = diagnostics.channel('vigil:event');

/**
 * The only way code records an audit event: builds the envelope, appends it to the hash-chained log and
 * notifies live subscribers once durable.
 */
export class EventBus {
  private readonly subscribers = new Set<(e: AuditEvent) => void>();
  constructor(private readonly sink: AuditSink) {}

  /** Resolves once the event is durable. Await it for decisions (auth, grants); fire-and-forget is fine
   *  for high-rate events (queries) as long as a rejection ends the session. */
  async emit(input: EventInput): Promise<AuditEvent & { receipt: AppendReceipt }> {
    const event = createEvent(input);
    const receipt = await this.sink.append(event);
    if (eventChannel.hasSubscribers) eventChannel.publish(event);
    for (const fn of this.subscribers) {
      try {
        fn(event);
      } catch {
        // A broken observer must never affect recording.
      }
    }
    return Object.assign(event, { receipt });
  }

  subscribe(fn: (e: AuditEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  get healthy(): boolean {
    return this.sink.healthy;
  }

  get failure(): Error | undefined {
    return this.sink.failure;
  }
}
