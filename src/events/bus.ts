import diagnostics from 'node:diagnostics_channel';
import type { AuditSink, AppendReceipt } from '../../recorder/types.ts';
import { createEvent, type AuditEvent, type EventInput } from './envelope.ts';

const ignore = (): void => {};
const STRICT = { strict: true } as const;

/** Every written event is also published here, for in-process observers (metrics, live streams, alerts). */
export const eventChannel = diagnostics.channel('vigil:event');

/**
 * The only way code records an audit event: builds the envelope, appends it to the hash-chained log and
 * notifies live subscribers once durable.
 */
/**
 * `batched`: a statement's record joins the next group commit and the statement is forwarded at once (a
 * gateway crash can lose the records of the last commit window). `strict`: the record is durable before
 * the statement's first byte is forwarded; concurrent sessions share the fsync.
 */
export type Durability = 'batched' | 'strict';

export class EventBus {
  private readonly subscribers = new Set<(e: AuditEvent) => void>();
  constructor(
    private readonly sink: AuditSink,
    readonly durability: Durability = 'batched',
  ) {
    // Events CLI processes recorded through the spool reach live observers as well.
    sink.onForeignEvent?.((e) => this.publish(e));
  }

  /** Resolves once the event is durable. Await it for decisions (auth, grants); fire-and-forget is fine
   *  for high-rate events (queries) as long as a rejection ends the session. */
  async emit(input: EventInput): Promise<AuditEvent & { receipt: AppendReceipt }> {
    const event = createEvent(input);
    const receipt = await this.sink.append(event);
    this.publish(event);
    return Object.assign(event, { receipt });
  }

  /**
   * Fire-and-forget for high-rate events (queries, file operations): no promise per event. The event is
   * durable at the next group commit; subscribers hear of it then. `onFailure` runs if it could not be
   * written — callers end their session there (fail closed).
   */
  record(input: EventInput, onFailure?: (err: Error) => void): void {
    if (!this.sink.appendLater) {
      this.emit(input).catch(onFailure ?? ignore);
      return;
    }
    this.sink.appendLater(createEvent(input), this.recorded, onFailure);
  }

  /**
   * Record that a statement or command is about to be forwarded to a backend (`db.query.start`,
   * `ssh.exec.start`). Batched: recorded like record() and `undefined` is returned — forward at once.
   * Strict: returns a promise that resolves once the record is durable; the caller holds the bytes back
   * until then and refuses the statement (protocol-native error, session ended) if it rejects.
   * Callers check `healthy` first: while the log is unwritable nothing is forwarded in either mode.
   * Cost: strict commits use `audit.strict_commit_window` (default 0); batched records are durable within
   * `background_commit_window` plus one fsync.
   */
  beforeForward(input: EventInput, onFailure?: (err: Error) => void): Promise<void> | undefined {
    if (this.durability === 'batched') {
      this.record(input, onFailure);
      return undefined;
    }
    // Its own short commit window (audit.strict_commit_window), not the one of awaited decisions: the
    // statement waits for it. Sessions appending meanwhile still share one fsync.
    const event = createEvent(input);
    return this.sink.append(event, STRICT).then(() => this.publish(event));
  }

  /** Called by the sink for each record()ed event (one shared function: no closure per event). */
  private readonly recorded = (err: Error | undefined, event: AuditEvent, onFailure: ((err: Error) => void) | undefined): void => {
    if (err) {
      onFailure?.(err);
      return;
    }
    this.publish(event);
  };

  private publish(event: AuditEvent): void {
    if (eventChannel.hasSubscribers) eventChannel.publish(event);
    for (const fn of this.subscribers) {
      try {
        fn(event);
      } catch {
        // A broken observer must never affect recording.
      }
    }
  }

  subscribe(fn: (e: AuditEvent) => void): () => void {
    this.subscribers.add(fn);
    return () => this.subscribers.delete(fn);
  }

  /** A session refused because the log is down: the outage record counts it (it cannot have its own event). */
  noteRefusedSession(): void {
    this.sink.noteRefusedSession?.();
  }

  get healthy(): boolean {
    return this.sink.healthy;
  }

  get failure(): Error | undefined {
    return this.sink.failure;
  }
}
