/**
 * The command/response state machine of one MySQL session, without sockets: the connection tells it
 * which commands it forwarded (and which local replies it owes the client), feeds it the server's bytes
 * as they are relayed, and hears back through a `TrackerSink` when each command's response is complete
 * and when a queued local reply may go out. It knows at any moment which commands are in flight and
 * how far their responses got, so a session that ends early can still record them. Pure.
 */
import { ProtocolError } from '../../src/errors.ts';
import { PacketFramer, PacketScanner, encodePacket, type ScanSink } from './framing.ts';
import { stripSessionTrack } from './session-state.ts';
import { ResponseTracker, type CommandResponse, type ResponseShape } from './response.ts';

/** Largest server packet read whole (OK/ERR/EOF, column counts); rows are never read whole. */
const MAX_SERVER_PACKET_READ = 1 << 30;

/** A command forwarded to the server whose response has not ended yet. `T` is the connection's own
 *  record of it (what to write when the response ends or never comes). */
export interface InFlight<T> {
  readonly command: string;
  /** performance.now() when it was forwarded. */
  readonly started: number;
  readonly data: T;
  /** Sequence id the response starts at: one after the command's last wire packet (1, unless the
   *  command spanned several 16 MiB packets). */
  readonly replySeq: number;
  /** A db.query.start (or the strict-mode intent) was recorded for it. */
  startRecorded: boolean;
}

export interface TrackerSink<T> {
  /** The response to `cmd` is complete. */
  response(cmd: InFlight<T>, res: CommandResponse): void;
  /** A local reply whose turn has come (every earlier response has passed). */
  local(bytes: Buffer): void;
}

type Entry<T> = { local: Buffer } | { local?: undefined; cmd: InFlight<T> };

export class CommandTracker<T> {
  private readonly responses: ResponseTracker;
  private readonly scanner = new PacketScanner(MAX_SERVER_PACKET_READ);
  private readonly queue: Entry<T>[] = [];
  private readonly scanSink: ScanSink;
  private serverBytes = 0;
  /** `serverBytes` when the response at the head of the queue began (approximately: at the end of the
   *  chunk that finished the previous response). */
  private headBytesFrom = 0;
  /** Sequence id the next server packet must carry. */
  private nextSeq = 1;

  constructor(
    capabilities: number,
    private readonly sink: TrackerSink<T>,
  ) {
    this.responses = new ResponseTracker(capabilities);
    const t = this.responses;
    this.scanSink = {
      wants: (head, length) => t.needsBody(head, length),
      packet: (payload, lastSeq) => {
        this.checkSeq(this.scanner.firstSeq, lastSeq);
        this.onResponse(t.onPacket(payload));
      },
      skipped: (head, length, lastSeq) => {
        this.checkSeq(this.scanner.firstSeq, lastSeq);
        this.onResponse(t.onSkipped(head, length));
      },
      countingRows: () => t.countingRows,
      rows: (count, lastSeq) => {
        // Whole single-wire rows: the last of `count` carries nextSeq + count - 1.
        this.checkSeq((lastSeq - count + 1) & 0xff, lastSeq);
        t.countRows(count);
      },
    };
  }

  /**
   * Sequence id the server's next packet will carry (the head command's reply seq until its response
   * starts): the one an ERR written in the server's place must use.
   */
  get nextServerSeq(): number {
    return this.nextSeq;
  }

  /** Responses still awaited. */
  get pending(): number {
    return this.responses.pending;
  }

  /** A command of this response shape was forwarded; `lastSeq` is the sequence id of its last wire packet. */
  sent(shape: ResponseShape, command: string, started: number, data: T, lastSeq = 0): InFlight<T> {
    const cmd: InFlight<T> = { command, started, data, replySeq: (lastSeq + 1) & 0xff, startRecorded: false };
    if (this.responses.pending === 0) {
      this.headBytesFrom = this.serverBytes;
      this.nextSeq = cmd.replySeq;
    }
    this.responses.expect(shape);
    this.queue.push({ cmd });
    return cmd;
  }

  /** A local reply: returns true when it may be written now, else it is handed to `sink.local` later. */
  local(bytes: Buffer): boolean {
    if (this.queue.length === 0) return true;
    this.queue.push({ local: bytes });
    return false;
  }

  private stripFramer: PacketFramer | undefined;
  /** Local replies that came due while `serverStripped` builds its output: they follow it. */
  private collecting: Buffer[] | undefined;

  /**
   * Server bytes for a client that did not ask for CLIENT_SESSION_TRACK while the backend session uses
   * it: followed as `server` follows them, and returned as the client must see them (OK packets without
   * the session-state block, `info` as the rest of the packet), followed by local replies that came due.
   */
  serverStripped(chunk: Buffer): Buffer {
    const framer = (this.stripFramer ??= new PacketFramer(MAX_SERVER_PACKET_READ));
    const out: Buffer[] = [];
    this.collecting = out;
    try {
      framer.push(chunk, (p) => {
        const head = p.payload.length > 0 ? p.payload[0]! : -1;
        const wire = p.wire ?? encodePacket(p.seq, p.payload);
        out.push(this.responses.isOk(head, p.payload.length) ? encodePacket(p.seq, stripSessionTrack(p.payload)) : wire);
        this.server(wire);
      });
    } finally {
      this.collecting = undefined;
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Server bytes, exactly as relayed to the client. Throws ProtocolError when they cannot be followed. */
  server(chunk: Buffer): void {
    this.serverBytes += chunk.length;
    this.scanner.push(chunk, this.scanSink);
  }

  /** Commands forwarded whose response has not ended, oldest first. */
  inFlight(): InFlight<T>[] {
    const out: InFlight<T>[] = [];
    for (const e of this.queue) if (!e.local) out.push(e.cmd);
    return out;
  }

  /** How far the response of the oldest command in flight got: rows and bytes relayed so far. */
  progress(): { rows: number; bytes: number } {
    return { rows: this.responses.rowsSoFar, bytes: this.serverBytes - this.headBytesFrom };
  }

  /** The session is over: nothing in flight will be answered (the connection recorded them). */
  abandon(): void {
    this.queue.length = 0;
  }

  /** Server packets of a response are numbered on from the command's 0: a gap means the relay lost
   *  its place (or the server is not speaking this protocol), and nothing after it can be trusted. */
  private checkSeq(first: number, last: number): void {
    if (first !== this.nextSeq) throw new ProtocolError(`server packet out of sequence (got ${first}, expected ${this.nextSeq})`, 'VIGIL_MYSQL_SEQUENCE');
    this.nextSeq = (last + 1) & 0xff;
  }

  private onResponse(res: CommandResponse | undefined): void {
    if (!res) return;
    this.headBytesFrom = this.serverBytes;
    const entry = this.queue.shift();
    if (entry && !entry.local) this.sink.response(entry.cmd, res);
    while (this.queue[0]?.local) {
      const local = (this.queue.shift() as { local: Buffer }).local;
      if (this.collecting) this.collecting.push(local);
      else this.sink.local(local);
    }
    const next = this.queue[0];
    if (next && !next.local) this.nextSeq = next.cmd.replySeq;
  }
}
