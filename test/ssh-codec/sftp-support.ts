import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { SftpObserver, type SftpOperation, type SftpObserveError } from '../../proxies/ssh/sftp/index.ts';

/** OpenSSH's own SFTP server, run directly as a child process. */
export const SFTP_SERVER = '/usr/lib/openssh/sftp-server';
const TAP = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'stdio-tap.mjs');

/** Bytes of an sftp session in the order they passed: `c` client→server, `s` server→client. */
export type Capture = { dir: 'c' | 's'; data: Buffer }[];

export function readCapture(file: string): Capture {
  const buf = fs.readFileSync(file);
  const out: Capture = [];
  for (let off = 0; off < buf.length; ) {
    const dir = String.fromCharCode(buf[off]) as 'c' | 's';
    const n = buf.readUInt32BE(off + 1);
    out.push({ dir, data: buf.subarray(off + 5, off + 5 + n) });
    off += 5 + n;
  }
  return out;
}

/**
 * Run the stock `sftp` client in batch mode against a local sftp-server (`sftp -D`), with a tap in
 * between recording both directions. `root` is the server's start directory.
 */
export async function captureSftpBatch(commands: string[], root: string, work: string): Promise<{ capture: Capture; stdout: string }> {
  const batch = path.join(work, 'batch');
  const capFile = path.join(work, `capture-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  fs.writeFileSync(batch, commands.join('\n') + '\n');
  const server = `${process.execPath} ${TAP} ${capFile} ${SFTP_SERVER} -d ${root}`;
  const { stdout } = await promisify(execFile)('sftp', ['-b', batch, '-D', server], { cwd: work });
  return { capture: readCapture(capFile), stdout };
}

/** Feed a capture to a fresh observer, each record cut into pieces by `cut` (offsets within the record). */
export function observe(capture: Capture, cut: (rec: Buffer, index: number) => number[] = () => []): { ops: SftpOperation[]; errors: SftpObserveError[] } {
  const ops: SftpOperation[] = [];
  const errors: SftpObserveError[] = [];
  const obs = new SftpObserver({ onOperation: (op) => ops.push(op), onError: (e) => errors.push(e) });
  capture.forEach((rec, i) => {
    let prev = 0;
    for (const at of [...cut(rec.data, i), rec.data.length]) {
      if (at <= prev) continue;
      const piece = rec.data.subarray(prev, at);
      if (rec.dir === 'c') obs.clientData(piece);
      else obs.serverData(piece);
      prev = at;
    }
  });
  obs.end();
  return { ops, errors };
}

/** The capture as one stream per direction joined at the ordering points: total byte count. */
export function captureSize(capture: Capture): number {
  return capture.reduce((n, r) => n + r.data.length, 0);
}

// --- A minimal SFTP v3 client encoder, to reach requests the stock client never sends (EXCL, APPEND,
// lsetstat, failures on purpose). It speaks to sftp-server over pipes and records like the tap does.

export const T = { INIT: 1, OPEN: 3, CLOSE: 4, READ: 5, WRITE: 6, FSTAT: 8, SETSTAT: 9, FSETSTAT: 10, OPENDIR: 11, READDIR: 12, REMOVE: 13, MKDIR: 14, RMDIR: 15, REALPATH: 16, STAT: 17, RENAME: 18, SYMLINK: 20, EXTENDED: 200 } as const;

export type Field = { u8: number } | { u32: number } | { u64: number } | { str: string | Buffer } | { attrs: { perms?: number; size?: number; times?: [number, number]; uidgid?: [number, number] } };

export function encodePacket(fields: Field[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    if ('u8' in f) parts.push(Buffer.from([f.u8]));
    else if ('u32' in f) { const b = Buffer.alloc(4); b.writeUInt32BE(f.u32); parts.push(b); }
    else if ('u64' in f) { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(f.u64)); parts.push(b); }
    else if ('str' in f) {
      const s = typeof f.str === 'string' ? Buffer.from(f.str) : f.str;
      const b = Buffer.alloc(4); b.writeUInt32BE(s.length); parts.push(b, s);
    } else {
      const a = f.attrs;
      let flags = 0;
      const body: Buffer[] = [];
      const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32BE(v); body.push(b); };
      if (a.size !== undefined) { flags |= 1; const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(a.size)); body.push(b); }
      if (a.uidgid) { flags |= 2; u32(a.uidgid[0]); u32(a.uidgid[1]); }
      if (a.perms !== undefined) { flags |= 4; u32(a.perms); }
      if (a.times) { flags |= 8; u32(a.times[0]); u32(a.times[1]); }
      const fb = Buffer.alloc(4); fb.writeUInt32BE(flags);
      parts.push(fb, ...body);
    }
  }
  const body = Buffer.concat(parts);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

export interface Reply { type: number; id: number; body: Buffer }

/** Sequential client: each `call` sends one request and waits for its reply. */
export class DirectSftp {
  readonly capture: Capture = [];
  private readonly child: ChildProcessWithoutNullStreams;
  private buf = Buffer.alloc(0);
  private waiting: ((r: Reply) => void) | null = null;
  private nextId = 1;

  constructor(root: string) {
    this.child = spawn(SFTP_SERVER, ['-d', root]);
    this.child.stdout.on('data', (c: Buffer) => {
      this.capture.push({ dir: 's', data: c });
      this.buf = Buffer.concat([this.buf, c]);
      while (this.buf.length >= 4 && this.buf.length >= 4 + this.buf.readUInt32BE(0)) {
        const n = this.buf.readUInt32BE(0);
        const body = this.buf.subarray(4, 4 + n);
        this.buf = this.buf.subarray(4 + n);
        const w = this.waiting;
        this.waiting = null;
        w?.({ type: body[0], id: body[0] === 2 ? 0 : body.readUInt32BE(1), body });
      }
    });
  }

  send(packet: Buffer): Promise<Reply> {
    this.capture.push({ dir: 'c', data: packet });
    const p = new Promise<Reply>((r) => (this.waiting = r));
    this.child.stdin.write(packet);
    return p;
  }

  init(): Promise<Reply> {
    return this.send(encodePacket([{ u8: T.INIT }, { u32: 3 }]));
  }

  call(type: number, ...fields: Field[]): Promise<Reply> {
    return this.send(encodePacket([{ u8: type }, { u32: this.nextId++ }, ...fields]));
  }

  /** OPEN and return the handle (throws on a STATUS reply). */
  async open(p: string, pflags: number): Promise<Buffer> {
    const r = await this.call(T.OPEN, { str: p }, { u32: pflags }, { attrs: {} });
    if (r.type !== 102) throw new Error(`open ${p} failed: status ${r.body.readUInt32BE(5)}`);
    return handleOf(r);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.child.once('exit', () => resolve());
      this.child.stdin.end();
    });
  }
}

export function handleOf(r: Reply): Buffer {
  const n = r.body.readUInt32BE(5);
  return Buffer.from(r.body.subarray(9, 9 + n));
}

export function statusOf(r: Reply): number {
  return r.type === 101 ? r.body.readUInt32BE(5) : -1;
}
