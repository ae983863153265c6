import { ATTR, EXT, FXP, OPEN_FLAGS, STATUS_NAMES, type OpenFlagName } from './constants.ts';
import { SftpDecodeError } from './errors.ts';
import { SshReader } from '../../../src/identity/ssh-wire.ts';

/**
 * Pure decoders for single SFTP v3 packets (the body after the uint32 length). Requests come from the
 * client, responses from the server. Only the fields an audit needs are kept; bulk data is never
 * touched, only its declared length (checked against the packet length).
 */

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Paths and messages: UTF-8 when valid, otherwise the bytes with non-ASCII escaped as \xNN (SFTP v3 paths are bytes). */
export function bytesToText(b: Buffer): string {
  try {
    return utf8.decode(b);
  } catch {
    let s = '';
    for (const c of b) s += c < 0x80 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
    return s;
  }
}

/** SSH wire reads (bounds-checked, SshWireError on overrun) plus the SFTP twists: lenient text, uint64 as number. */
class SftpReader extends SshReader {
  /** Exact below 2^53 (8 PiB), which covers every real offset and size. */
  u64(what: string): number {
    return Number(this.uint64(what));
  }

  path(what: string): string {
    return bytesToText(this.string(what));
  }
}

/** Attributes as sent in SETSTAT/FSETSTAT/OPEN/MKDIR: only the fields present. */
export interface SftpAttrs {
  size?: number;
  uid?: number;
  gid?: number;
  /** Permission bits (mode & 07777) in octal, e.g. "0644". */
  permissions?: string;
  atime?: number;
  mtime?: number;
  /** Names of extended attributes set. */
  extended?: string[];
}

/** A handle as an opaque map key (handles are at most 256 bytes). */
export type HandleKey = string;

export type SftpRequest =
  | { kind: 'init'; version: number }
  | { kind: 'open'; id: number; path: string; flags: OpenFlagName[]; attrs: SftpAttrs }
  | { kind: 'close'; id: number; handle: HandleKey }
  | { kind: 'read'; id: number; handle: HandleKey; offset: number; length: number }
  | { kind: 'write'; id: number; handle: HandleKey; offset: number; length: number }
  | { kind: 'opendir'; id: number; path: string }
  | { kind: 'remove'; id: number; path: string }
  | { kind: 'mkdir'; id: number; path: string; attrs: SftpAttrs }
  | { kind: 'rmdir'; id: number; path: string }
  | { kind: 'setstat'; id: number; path: string; attrs: SftpAttrs; followLinks: boolean }
  | { kind: 'fsetstat'; id: number; handle: HandleKey; attrs: SftpAttrs }
  | { kind: 'rename'; id: number; oldPath: string; newPath: string; posix: boolean }
  /** Raw order of the two SYMLINK strings; which is the link is decided by the observer (see there). */
  | { kind: 'symlink'; id: number; first: string; second: string }
  | { kind: 'hardlink'; id: number; oldPath: string; newPath: string }
  /** `length` 0 means up to the end of the source file. */
  | { kind: 'copy'; id: number; from: HandleKey; fromOffset: number; length: number; to: HandleKey; toOffset: number }
  /** Any request that reads or does not change the file system (stat, readdir, realpath, statvfs, …). */
  | { kind: 'other'; id: number };

export type SftpResponse =
  | { kind: 'version'; version: number; extensions: string[] }
  | { kind: 'status'; id: number; code: number; message: string }
  | { kind: 'handle'; id: number; handle: HandleKey }
  | { kind: 'data'; id: number; length: number }
  /** NAME, ATTRS, EXTENDED_REPLY: answers to reads, only their id matters here. */
  | { kind: 'other'; id: number };

export function statusName(code: number): string {
  return STATUS_NAMES[code] ?? `UNKNOWN_${code}`;
}

function handleKey(r: SftpReader): HandleKey {
  const h = r.string('handle');
  if (h.length > 256) throw new SftpDecodeError(`handle of ${h.length} bytes (max 256)`);
  return h.toString('latin1');
}

export function decodeAttrs(r: SftpReader): SftpAttrs {
  const flags = r.uint32('attribute flags');
  const a: SftpAttrs = {};
  if (flags & ATTR.SIZE) a.size = r.u64('size');
  if (flags & ATTR.UIDGID) {
    a.uid = r.uint32('uid');
    a.gid = r.uint32('gid');
  }
  if (flags & ATTR.PERMISSIONS) a.permissions = (r.uint32('permissions') & 0o7777).toString(8).padStart(4, '0');
  if (flags & ATTR.ACMODTIME) {
    a.atime = r.uint32('atime');
    a.mtime = r.uint32('mtime');
  }
  if (flags & ATTR.EXTENDED) {
    const n = r.uint32('extended count');
    // Each pair is at least 8 bytes: bound the loop by what the packet can hold.
    if (n * 8 > r.remaining) throw new SftpDecodeError(`extended attribute count ${n} exceeds the packet`);
    a.extended = [];
    for (let i = 0; i < n; i++) {
      a.extended.push(r.path('extended type'));
      r.string('extended data');
    }
  }
  return a;
}

function openFlags(pflags: number): OpenFlagName[] {
  const out: OpenFlagName[] = [];
  for (const [name, bit] of OPEN_FLAGS) if (pflags & bit) out.push(name);
  return out;
}

/**
 * A client packet. For WRITE, `body` may be only the head of the packet (see SftpFramer): the data
 * string's declared length must account exactly for the rest of `packetLength`.
 */
export function decodeRequest(body: Buffer, packetLength: number): SftpRequest {
  const r = new SftpReader(body);
  const req = readRequest(r, packetLength);
  // A WRITE's body is only its head (checked against the packet length above); any other packet must
  // end exactly where its fields do: bytes after them would pass to the server unaccounted for.
  if (req.kind !== 'write') exactEnd(r, `request type ${body[0]}`);
  return req;
}

function exactEnd(r: SftpReader, what: string): void {
  if (r.remaining !== 0) throw new SftpDecodeError(`${r.remaining} trailing byte(s) after the fields of ${what}`);
}

function readRequest(r: SftpReader, packetLength: number): SftpRequest {
  const type = r.byte('type');
  if (type === FXP.INIT) return { kind: 'init', version: r.uint32('version') };
  const id = r.uint32('request id');
  switch (type) {
    case FXP.OPEN: {
      const path = r.path('path');
      const pflags = r.uint32('pflags');
      return { kind: 'open', id, path, flags: openFlags(pflags), attrs: decodeAttrs(r) };
    }
    case FXP.CLOSE:
      return { kind: 'close', id, handle: handleKey(r) };
    case FXP.READ:
      return { kind: 'read', id, handle: handleKey(r), offset: r.u64('offset'), length: r.uint32('length') };
    case FXP.WRITE: {
      const handle = handleKey(r);
      const offset = r.u64('offset');
      const length = r.uint32('data length');
      if (r.offset + length !== packetLength) {
        throw new SftpDecodeError(`WRITE data length ${length} does not match the packet length ${packetLength}`);
      }
      return { kind: 'write', id, handle, offset, length };
    }
    case FXP.OPENDIR:
      return { kind: 'opendir', id, path: r.path('path') };
    case FXP.REMOVE:
      return { kind: 'remove', id, path: r.path('path') };
    case FXP.MKDIR:
      return { kind: 'mkdir', id, path: r.path('path'), attrs: decodeAttrs(r) };
    case FXP.RMDIR:
      return { kind: 'rmdir', id, path: r.path('path') };
    case FXP.SETSTAT:
      return { kind: 'setstat', id, path: r.path('path'), attrs: decodeAttrs(r), followLinks: true };
    case FXP.FSETSTAT:
      return { kind: 'fsetstat', id, handle: handleKey(r), attrs: decodeAttrs(r) };
    case FXP.RENAME:
      return { kind: 'rename', id, oldPath: r.path('old path'), newPath: r.path('new path'), posix: false };
    case FXP.SYMLINK:
      return { kind: 'symlink', id, first: r.path('path'), second: r.path('path') };
    case FXP.EXTENDED:
      return decodeExtended(id, r);
    case FXP.LSTAT:
    case FXP.STAT:
    case FXP.REALPATH:
    case FXP.READLINK:
      r.string('path');
      return { kind: 'other', id };
    case FXP.FSTAT:
    case FXP.READDIR:
      handleKey(r);
      return { kind: 'other', id };
    default:
      throw new SftpDecodeError(`unknown request type ${type}`);
  }
}

function decodeExtended(id: number, r: SftpReader): SftpRequest {
  const name = bytesToText(r.string('extended request name'));
  switch (name) {
    case EXT.POSIX_RENAME:
      return { kind: 'rename', id, oldPath: r.path('old path'), newPath: r.path('new path'), posix: true };
    case EXT.HARDLINK:
      return { kind: 'hardlink', id, oldPath: r.path('old path'), newPath: r.path('new path') };
    case EXT.LSETSTAT:
      return { kind: 'setstat', id, path: r.path('path'), attrs: decodeAttrs(r), followLinks: false };
    case EXT.COPY_DATA:
      return { kind: 'copy', id, from: handleKey(r), fromOffset: r.u64('read offset'), length: r.u64('length'), to: handleKey(r), toOffset: r.u64('write offset') };
    case EXT.STATVFS:
    case EXT.EXPAND_PATH:
    case EXT.HOME_DIRECTORY:
      r.string('path');
      return { kind: 'other', id };
    case EXT.FSTATVFS:
    case EXT.FSYNC:
      handleKey(r);
      return { kind: 'other', id };
    case EXT.LIMITS:
      return { kind: 'other', id };
    case EXT.USERS_GROUPS_BY_ID:
      r.string('uids');
      r.string('gids');
      return { kind: 'other', id };
    default:
      // An extension vigil does not know could change anything: it is not passed on blind.
      throw new SftpDecodeError(`unknown extended request ${JSON.stringify(name.slice(0, 64))}`);
  }
}

/**
 * A server packet. For DATA, `body` may be only the head: the data string's declared length must
 * account exactly for the rest of `packetLength`.
 */
export function decodeResponse(body: Buffer, packetLength: number): SftpResponse {
  const r = new SftpReader(body);
  const res = readResponse(r, packetLength);
  if (res.kind !== 'data' && !(res.kind === 'other' && body[0] === FXP.EXTENDED_REPLY)) exactEnd(r, `response type ${body[0]}`);
  return res;
}

function readResponse(r: SftpReader, packetLength: number): SftpResponse {
  const type = r.byte('type');
  if (type === FXP.VERSION) {
    const version = r.uint32('version');
    const extensions: string[] = [];
    while (r.remaining > 0) {
      extensions.push(r.path('extension name'));
      r.string('extension data');
    }
    return { kind: 'version', version, extensions };
  }
  const id = r.uint32('request id');
  switch (type) {
    case FXP.STATUS: {
      const code = r.uint32('status code');
      // Version 3 servers may omit the message (draft-02 predates it); OpenSSH always sends it.
      const message = r.remaining > 0 ? r.path('status message') : '';
      if (r.remaining > 0) r.string('language tag');
      return { kind: 'status', id, code, message };
    }
    case FXP.HANDLE:
      return { kind: 'handle', id, handle: handleKey(r) };
    case FXP.DATA: {
      const length = r.uint32('data length');
      if (r.offset + length !== packetLength) {
        throw new SftpDecodeError(`DATA length ${length} does not match the packet length ${packetLength}`);
      }
      return { kind: 'data', id, length };
    }
    case FXP.NAME: {
      const count = r.uint32('name count');
      // Each entry is at least 12 bytes: bound the loop by what the packet can hold.
      if (count * 12 > r.remaining) throw new SftpDecodeError(`name count ${count} exceeds the packet`);
      for (let i = 0; i < count; i++) {
        r.string('filename');
        r.string('longname');
        decodeAttrs(r);
      }
      return { kind: 'other', id };
    }
    case FXP.ATTRS:
      decodeAttrs(r);
      return { kind: 'other', id };
    case FXP.EXTENDED_REPLY:
      // Free-form by definition (its layout depends on the request).
      return { kind: 'other', id };
    default:
      throw new SftpDecodeError(`unknown response type ${type}`);
  }
}
