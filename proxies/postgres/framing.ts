import { ProtocolError } from '../../src/errors.ts';

/**
 * Framing of the PostgreSQL wire protocol, apart from decoding: cuts a byte stream into messages.
 * Typed messages are `type(1) length(4, includes itself) body`; startup-phase messages have no type byte.
 *
 * Pure and socket-free. Built to observe a relayed stream cheaply: the caller forwards the original
 * chunks itself, and for bulky message types (DataRow, CopyData) asks for the header only, so their
 * bodies are skipped without being buffered or copied.
 */

/** Called per message. `msg` is the whole message (header included) or undefined for header-only types. */
export type OnMessage = (type: number, msg: Buffer | undefined, length: number) => void;

export interface FramerOptions {
  /** Largest accepted message length (the length field value). */
  maxLength: number;
  /** Startup phase: messages without a type byte. */
  untyped?: boolean;
  /** Types whose bodies are not needed: the callback gets the header only and the body is skipped. */
  headerOnly?: (type: number) => boolean;
}

/** Type used for untyped (startup-phase) messages. */
export const UNTYPED = 0;

export class MessageFramer {
  private readonly maxLength: number;
  private untyped: boolean;
  /** `headerOnly` answered once per type byte up front: a table lookup per message instead of a call. */
  private readonly skipBody = new Uint8Array(256);
  /** Partial header bytes (at most 5). */
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  /** Current message being collected (after its header is known). */
  private type = 0;
  private length = 0;
  /** Bytes of the current message body still to come. */
  private remaining = 0;
  private skipping = false;
  private parts: Buffer[] = [];
  private inMessage = false;
  /**
   * Where, in the chunk last pushed, the message whose header was read last begins (negative: its
   * header began in earlier chunks). After an oversized-length error, the bytes before it are whole
   * messages that may still be relayed; the oversized one must not be.
   */
  messageStart = 0;

  constructor(opts: FramerOptions) {
    this.maxLength = opts.maxLength;
    this.untyped = opts.untyped ?? false;
    if (opts.headerOnly) for (let t = 0; t < 256; t++) this.skipBody[t] = opts.headerOnly(t) ? 1 : 0;
  }

  /** Switch from the startup phase (untyped) to typed messages. Only valid at a message boundary. */
  setTyped(): void {
    this.untyped = false;
  }

  /** True when no partial message is buffered (the stream is at a message boundary). */
  get atBoundary(): boolean {
    return this.headerFill === 0 && !this.inMessage;
  }

  /**
   * A message is in progress whose body the caller will get whole (not a header-only type), or its
   * header is incomplete: a caller that must see a message before relaying it holds these bytes back.
   */
  get holdsPartial(): boolean {
    return this.headerFill > 0 || (this.inMessage && !this.skipping);
  }

  /** Bytes of a header not complete yet, at the end of what was pushed: its length is not checked yet. */
  get pendingHeaderBytes(): number {
    return this.headerFill;
  }

  /**
   * Feed a chunk. Calls `onMessage` for every complete message (or header, for header-only types).
   * `stopAfter`, when given, is asked after each message: returning true stops consuming and `push`
   * returns the offset just after that message (the caller keeps the rest). Otherwise returns chunk.length.
   * Throws ProtocolError on a bad length.
   */
  push(chunk: Buffer, onMessage: OnMessage, stopAfter?: () => boolean): number {
    let off = 0;
    const n = chunk.length;
    const headerLen = this.untyped ? 4 : 5;
    while (off < n) {
      if (!this.inMessage) {
        // Fast path: a whole header available in this chunk with nothing pending.
        let type: number;
        let length: number;
        if (this.headerFill === 0 && n - off >= headerLen) {
          if (this.untyped) {
            type = UNTYPED;
            length = chunk.readUInt32BE(off);
          } else {
            type = chunk[off];
            length = chunk.readUInt32BE(off + 1);
          }
        } else {
          this.messageStart = off - this.headerFill;
          const take = Math.min(headerLen - this.headerFill, n - off);
          chunk.copy(this.header, this.headerFill, off, off + take);
          this.headerFill += take;
          off += take;
          if (this.headerFill < headerLen) return n;
          type = this.untyped ? UNTYPED : this.header[0];
          length = this.header.readUInt32BE(this.untyped ? 0 : 1);
          this.headerFill = 0;
          this.begin(type, length);
          if (this.skipping) onMessage(type, undefined, length);
          else this.parts.push(Buffer.from(this.header.subarray(0, headerLen)));
          if (this.remaining === 0) {
            if (this.skipping) this.inMessage = false;
            else this.finish(onMessage);
            if (stopAfter?.()) return off;
          }
          continue;
        }
        const total = (this.untyped ? 0 : 1) + length;
        this.messageStart = off;
        this.begin(type, length);
        if (this.skipping) {
          onMessage(type, undefined, length);
          off += headerLen;
          if (this.remaining === 0) {
            this.inMessage = false;
            if (stopAfter?.()) return off;
          }
          continue;
        }
        if (n - off >= total) {
          // Whole message in this chunk: no copy.
          this.inMessage = false;
          onMessage(type, chunk.subarray(off, off + total), length);
          off += total;
          if (stopAfter?.()) return off;
          continue;
        }
        this.parts.push(chunk.subarray(off, off + headerLen));
        off += headerLen;
        continue;
      }
      const take = Math.min(this.remaining, n - off);
      if (!this.skipping) this.parts.push(chunk.subarray(off, off + take));
      this.remaining -= take;
      off += take;
      if (this.remaining === 0) {
        if (this.skipping) this.inMessage = false;
        else this.finish(onMessage);
        if (stopAfter?.()) return off;
      }
    }
    return n;
  }

  private begin(type: number, length: number): void {
    if (length < 4) throw new ProtocolError(`invalid message length ${length}`, 'VIGIL_PG_MALFORMED');
    if (length > this.maxLength) throw new ProtocolError(`message of ${length} bytes exceeds the limit of ${this.maxLength}`, 'VIGIL_PG_OVERSIZED');
    this.type = type;
    this.length = length;
    this.remaining = length - 4;
    this.skipping = this.skipBody[type] === 1;
    this.inMessage = true;
  }

  private finish(onMessage: OnMessage): void {
    const msg = this.parts.length === 1 ? Buffer.from(this.parts[0]) : Buffer.concat(this.parts);
    this.parts = [];
    this.inMessage = false;
    onMessage(this.type, msg, this.length);
  }
}
