import { FXP, FX_EOF, FX_OK, SFTP_VERSION, type OpenFlagName } from './constants.ts';
import { decodeRequest, decodeResponse, statusName, type HandleKey, type SftpAttrs, type SftpRequest, type SftpResponse } from './decode.ts';
import { SftpDecodeError, SftpObserveError, type SftpObserveCode } from './errors.ts';
import { SftpFramer } from './framer.ts';

/**
 * Outcome of an operation: the server's STATUS/HANDLE reply, or `incomplete` when the channel ended
 * before the reply (or, for `close`, with the file still open).
 */
export type SftpOutcome = 'ok' | 'error' | 'incomplete';

export interface SftpStatus {
  code: number;
  name: string;
  message: string;
}

interface OpBase {
  outcome: SftpOutcome;
  /** Present when outcome is `error`. */
  status?: SftpStatus;
}

export type SftpOperation = OpBase &
  (
    /** `attrs` (present when the request set any): what a created file gets, its mode included. */
    | { op: 'open'; path: string; flags: OpenFlagName[]; attrs?: SftpAttrs }
    /**
     * `bytesWritten` counts writes the server confirmed; `bytesWrittenUnconfirmed` (present only when not 0)
     * writes forwarded to it whose reply never came (the channel ended first): the target may have done them.
     */
    | { op: 'close'; path: string; bytesRead: number; bytesWritten: number; bytesWrittenUnconfirmed?: number }
    | { op: 'remove'; path: string }
    | { op: 'rename'; oldPath: string; newPath: string; posix: boolean }
    | { op: 'mkdir'; path: string; attrs: SftpAttrs }
    | { op: 'rmdir'; path: string }
    | { op: 'setstat'; path: string; attrs: SftpAttrs; via: 'path' | 'handle' | 'nofollow' }
    | { op: 'symlink'; linkPath: string; targetPath: string }
    | { op: 'hardlink'; oldPath: string; newPath: string }
    /** Server-side copy (`copy-data`); `length` 0 means to the end of the source. */
    | { op: 'copy'; fromPath: string; toPath: string; length: number }
    /** Reported only when the server refused a transfer (disk full, …); successes add to `close`. */
    | { op: 'read' | 'write'; path: string; offset: number; length: number }
  );

/** A file-changing request as the client sent it, before the server saw it (strict durability). */
export type SftpIntent =
  | { op: 'open'; path: string; flags: OpenFlagName[]; attrs?: SftpAttrs }
  | { op: 'remove' | 'rmdir' | 'mkdir'; path: string }
  | { op: 'setstat'; path: string; attrs: SftpAttrs }
  | { op: 'rename' | 'hardlink'; oldPath: string; newPath: string }
  | { op: 'symlink'; linkPath: string; targetPath: string }
  | { op: 'copy'; fromPath: string; toPath: string };

export interface SftpObserverOptions {
  onOperation(op: SftpOperation): void;
  /**
   * Called as each file-changing request is decoded from the client, before it is forwarded (opens for
   * reading, reads and writes through an open handle are not intents: the open that allowed them is).
   */
  onIntent?(intent: SftpIntent): void;
  /** Observation problems. After a `fatal` one the observer ignores the rest of the stream. */
  onError?(err: SftpObserveError): void;
  /** Largest packet accepted in either direction (default 1 MiB; OpenSSH uses at most 256 KiB). */
  maxPacket?: number;
  /** Most requests awaiting a reply (default 4096; OpenSSH's client keeps at most 64 in flight). */
  maxPending?: number;
  /** Most open handles tracked (default 4096). */
  maxHandles?: number;
  /**
   * Order of the two SYMLINK strings. OpenSSH (client and sftp-server) sends target then link, the
   * reverse of draft-02 (link then target); OpenSSH is what we front, so that is the default.
   */
  symlinkOrder?: 'openssh' | 'draft';
}

interface OpenFile {
  path: string;
  /** Directory handles are tracked (so their ids resolve) but produce no events. */
  dir: boolean;
  bytesRead: number;
  bytesWritten: number;
  /** Bytes of WRITEs forwarded whose reply never came. */
  bytesWrittenUnconfirmed: number;
}

/** Requests awaiting a reply; reads that change nothing are kept as a shared marker. */
type Pending = Exclude<SftpRequest, { kind: 'init' } | { kind: 'other' }> | typeof READ_ONLY;
const READ_ONLY = { kind: 'read-only' } as const;

/** Header bytes kept of a WRITE/DATA packet: type, id, handle (<= 256), offset, length, with room. */
const HEAD_BYTES = 512;

/**
 * Observes an `sftp` subsystem channel without taking part in it: fed the raw bytes of both directions
 * in arbitrary chunks, it reports one operation per file-changing request once its reply is seen,
 * plus a `close` per file handle with the bytes read and written through it.
 *
 * Call `clientData` before the bytes are forwarded to the server and `serverData` before they are
 * forwarded to the client, so a reply is never seen before its request. No method throws: problems go
 * to `onError`; after a fatal one the caller must stop relaying (nothing after it could be recorded).
 */
export class SftpObserver {
  private readonly opts: SftpObserverOptions;
  private readonly client: SftpFramer;
  private readonly server: SftpFramer;
  private readonly pending = new Map<number, Pending>();
  private readonly handles = new Map<HandleKey, OpenFile>();
  private readonly maxPending: number;
  private readonly maxHandles: number;
  private failed = false;
  private ended = false;
  /** INIT seen from the client / VERSION from the server (each exactly once, first). */
  private clientInit = false;
  private serverVersion = false;
  /** Request ids decoded from the client chunk being fed: if it turns out undecodable, none of it is forwarded. */
  private chunkIds: number[] = [];
  /** Intents decoded from the client chunk being fed, handed over once the whole chunk decoded. */
  private chunkIntents: SftpIntent[] = [];

  constructor(opts: SftpObserverOptions) {
    this.opts = opts;
    const maxPacket = opts.maxPacket ?? 1024 * 1024;
    this.maxPending = opts.maxPending ?? 4096;
    this.maxHandles = opts.maxHandles ?? 4096;
    this.client = new SftpFramer({
      maxPacket,
      headBytes: HEAD_BYTES,
      streamed: (t) => t === FXP.WRITE,
      onPacket: (body, len) => this.onRequest(decodeRequest(body, len)),
    });
    this.server = new SftpFramer({
      maxPacket,
      headBytes: HEAD_BYTES,
      streamed: (t) => t === FXP.DATA,
      onPacket: (body, len) => this.onResponse(decodeResponse(body, len)),
    });
  }

  /** True once a fatal problem stopped observation. */
  get stopped(): boolean {
    return this.failed;
  }

  clientData(chunk: Buffer): void {
    this.feed(this.client, 'client', chunk);
  }

  serverData(chunk: Buffer): void {
    this.feed(this.server, 'server', chunk);
  }

  /**
   * The channel closed: requests never answered are reported `incomplete`, and so is a `close` for each
   * file still open (with the bytes moved so far).
   */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.failed) return;
    for (const [dir, framer] of [['client', this.client], ['server', this.server]] as const) {
      if (framer.midPacket) this.report(new SftpObserveError('VIGIL_SFTP_TRUNCATED', dir, 'ended inside a packet', false));
    }
    this.settleAll();
  }

  private settleAll(): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const req of pending) {
      try {
        this.settle(req, undefined);
      } catch {
        /* only a handle-table overflow throws, and only for replies */
      }
    }
    for (const f of this.handles.values()) {
      if (!f.dir) this.emit({ op: 'close', path: f.path, ...this.byteCounts(f), outcome: 'incomplete' });
    }
    this.handles.clear();
  }

  private feed(framer: SftpFramer, dir: 'client' | 'server', chunk: Buffer): void {
    if (this.failed || this.ended) return;
    this.chunkIds.length = 0;
    this.chunkIntents.length = 0;
    try {
      framer.push(chunk);
      for (const intent of this.chunkIntents) this.opts.onIntent?.(intent);
    } catch (e) {
      this.failed = true;
      // The caller drops the whole chunk, so its requests never reach the server: not on record as sent.
      if (dir === 'client') for (const id of this.chunkIds) this.pending.delete(id);
      // What was already forwarded stays on record: unanswered requests and open files end incomplete.
      this.settleAll();
      this.report(toObserveError(e, dir));
    }
  }

  private report(err: SftpObserveError): void {
    try {
      this.opts.onError?.(err);
    } catch {
      /* a reporting bug must not stop the relay */
    }
  }

  private emit(op: SftpOperation): void {
    try {
      this.opts.onOperation(op);
    } catch {
      /* a consumer bug must not stop the relay */
    }
  }

  private onRequest(req: SftpRequest): void {
    if (req.kind === 'init') {
      if (this.clientInit) throw new SftpDecodeError('a second INIT', 'VIGIL_SFTP_OUT_OF_PHASE');
      if (req.version < SFTP_VERSION) throw new SftpDecodeError(`client speaks SFTP version ${req.version}`, 'VIGIL_SFTP_UNSUPPORTED_VERSION');
      this.clientInit = true;
      return;
    }
    if (!this.clientInit) throw new SftpDecodeError(`request type ${req.kind} before INIT`, 'VIGIL_SFTP_OUT_OF_PHASE');
    // Two requests with one id would make their replies ambiguous.
    if (this.pending.has(req.id)) {
      throw new SftpDecodeError(`request id ${req.id} reused while in flight`, 'VIGIL_SFTP_OUT_OF_PHASE');
    } else if (this.pending.size >= this.maxPending) {
      throw new SftpDecodeError(`more than ${this.maxPending} requests in flight`, 'VIGIL_SFTP_TOO_MANY_PENDING');
    }
    this.pending.set(req.id, req.kind === 'other' ? READ_ONLY : req);
    this.chunkIds.push(req.id);
    if (this.opts.onIntent && req.kind !== 'other') {
      const intent = this.intentOf(req);
      if (intent) this.chunkIntents.push(intent);
    }
  }

  private onResponse(res: SftpResponse): void {
    if (res.kind === 'version') {
      if (this.serverVersion || !this.clientInit) throw new SftpDecodeError('VERSION out of turn', 'VIGIL_SFTP_OUT_OF_PHASE');
      this.serverVersion = true;
      if (res.version !== SFTP_VERSION) throw new SftpDecodeError(`server speaks SFTP version ${res.version}`, 'VIGIL_SFTP_UNSUPPORTED_VERSION');
      return;
    }
    const req = this.pending.get(res.id);
    if (!req) {
      this.report(new SftpObserveError('VIGIL_SFTP_UNEXPECTED_REPLY', 'server', `reply to unknown request id ${res.id}`, false));
      return;
    }
    this.pending.delete(res.id);
    this.settle(req, res);
  }

  private intentOf(req: Exclude<SftpRequest, { kind: 'init' } | { kind: 'other' }>): SftpIntent | undefined {
    switch (req.kind) {
      case 'open':
        return req.flags.some((f) => f !== 'read') ? { op: 'open', path: req.path, flags: req.flags, ...openAttrs(req.attrs) } : undefined;
      case 'remove':
      case 'rmdir':
      case 'mkdir':
        return { op: req.kind, path: req.path };
      case 'setstat':
        return { op: 'setstat', path: req.path, attrs: req.attrs };
      case 'fsetstat':
        return { op: 'setstat', path: this.intentPath(req.handle, 'FSETSTAT'), attrs: req.attrs };
      case 'rename':
      case 'hardlink':
        return { op: req.kind, oldPath: req.oldPath, newPath: req.newPath };
      case 'symlink': {
        const [targetPath, linkPath] = this.opts.symlinkOrder === 'draft' ? [req.second, req.first] : [req.first, req.second];
        return { op: 'symlink', linkPath, targetPath };
      }
      case 'copy':
        return { op: 'copy', fromPath: this.intentPath(req.from, 'copy-data'), toPath: this.intentPath(req.to, 'copy-data') };
      default:
        return undefined;
    }
  }

  /**
   * The file a handle is open on, for an intent recorded before the request goes on. sftp-server gives a
   * closed handle's number to the next file opened, so while that handle's CLOSE, or (for a handle not
   * open yet) any OPEN, awaits its reply, which file the request will touch is not known: it is refused
   * rather than recorded against a file it may not touch. '' for a handle that names no file (refused).
   */
  private intentPath(handle: HandleKey, what: string): string {
    const known = this.handles.get(handle);
    for (const p of this.pending.values()) {
      if ((p.kind === 'close' && p.handle === handle) || (!known && (p.kind === 'open' || p.kind === 'opendir'))) {
        throw new SftpDecodeError(`${what} through a handle whose file is not settled yet (an OPEN or CLOSE awaits its reply)`, 'VIGIL_SFTP_OUT_OF_PHASE');
      }
    }
    return known?.path ?? '';
  }

  private byteCounts(f: OpenFile): { bytesRead: number; bytesWritten: number; bytesWrittenUnconfirmed?: number } {
    return { bytesRead: f.bytesRead, bytesWritten: f.bytesWritten, ...(f.bytesWrittenUnconfirmed > 0 ? { bytesWrittenUnconfirmed: f.bytesWrittenUnconfirmed } : {}) };
  }

  /** Turn a request and its reply (undefined: none came) into counters and operations. */
  private settle(req: Pending, res: SftpResponse | undefined): void {
    if (req.kind === 'read-only') return;
    const outcome: SftpOutcome = res === undefined ? 'incomplete' : res.kind === 'status' && res.code === FX_OK ? 'ok' : res.kind === 'handle' ? 'ok' : 'error';
    const status = res?.kind === 'status' && res.code !== FX_OK ? { code: res.code, name: statusName(res.code), message: res.message } : undefined;
    const result = status ? { outcome, status } : { outcome };
    switch (req.kind) {
      case 'open':
      case 'opendir': {
        const dir = req.kind === 'opendir';
        if (res?.kind === 'handle') {
          if (this.handles.size >= this.maxHandles && !this.handles.has(res.handle)) {
            throw new SftpDecodeError(`more than ${this.maxHandles} open handles`, 'VIGIL_SFTP_TOO_MANY_PENDING');
          }
          this.handles.set(res.handle, { path: req.path, dir, bytesRead: 0, bytesWritten: 0, bytesWrittenUnconfirmed: 0 });
        }
        if (req.kind === 'open') this.emit({ op: 'open', path: req.path, flags: req.flags, ...openAttrs(req.attrs), ...result });
        return;
      }
      case 'read': {
        const f = this.handles.get(req.handle);
        if (!f) return;
        if (res?.kind === 'data') f.bytesRead += res.length;
        else if (status && status.code !== FX_EOF) this.emit({ op: 'read', path: f.path, offset: req.offset, length: req.length, ...result });
        return;
      }
      case 'write': {
        const f = this.handles.get(req.handle);
        if (!f) return;
        if (outcome === 'ok') f.bytesWritten += req.length;
        // Forwarded, never answered: the target may have written it, so it stays on record (apart).
        else if (res === undefined) f.bytesWrittenUnconfirmed += req.length;
        else this.emit({ op: 'write', path: f.path, offset: req.offset, length: req.length, ...result });
        return;
      }
      case 'close': {
        const f = this.handles.get(req.handle);
        if (!f) return;
        // sftp-server forgets the handle whatever the close status; so do we.
        this.handles.delete(req.handle);
        if (!f.dir) this.emit({ op: 'close', path: f.path, ...this.byteCounts(f), ...result });
        return;
      }
      case 'fsetstat': {
        const f = this.handles.get(req.handle);
        this.emit({ op: 'setstat', path: f?.path ?? '', attrs: req.attrs, via: 'handle', ...result });
        return;
      }
      case 'setstat':
        this.emit({ op: 'setstat', path: req.path, attrs: req.attrs, via: req.followLinks ? 'path' : 'nofollow', ...result });
        return;
      case 'remove':
        this.emit({ op: 'remove', path: req.path, ...result });
        return;
      case 'rmdir':
        this.emit({ op: 'rmdir', path: req.path, ...result });
        return;
      case 'mkdir':
        this.emit({ op: 'mkdir', path: req.path, attrs: req.attrs, ...result });
        return;
      case 'rename':
        this.emit({ op: 'rename', oldPath: req.oldPath, newPath: req.newPath, posix: req.posix, ...result });
        return;
      case 'hardlink':
        this.emit({ op: 'hardlink', oldPath: req.oldPath, newPath: req.newPath, ...result });
        return;
      case 'copy':
        this.emit({ op: 'copy', fromPath: this.handles.get(req.from)?.path ?? '', toPath: this.handles.get(req.to)?.path ?? '', length: req.length, ...result });
        return;
      case 'symlink': {
        const [targetPath, linkPath] = this.opts.symlinkOrder === 'draft' ? [req.second, req.first] : [req.first, req.second];
        this.emit({ op: 'symlink', linkPath, targetPath, ...result });
        return;
      }
    }
  }
}

/** An OPEN's attributes, when it set any (the mode of a file it creates is as much on record as a chmod). */
function openAttrs(attrs: SftpAttrs): { attrs?: SftpAttrs } {
  return Object.keys(attrs).length > 0 ? { attrs } : {};
}

function toObserveError(e: unknown, dir: 'client' | 'server'): SftpObserveError {
  if (e instanceof SftpObserveError) return e;
  const code: SftpObserveCode = e instanceof SftpDecodeError ? e.code : 'VIGIL_SFTP_MALFORMED';
  return new SftpObserveError(code, dir, e instanceof Error ? e.message : String(e), true);
}
