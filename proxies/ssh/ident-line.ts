import type net from 'node:net';

/** Longest run of bytes held back waiting for the identification line (RFC 4253 allows 255 per line). */
const MAX_HELD = 8192;
const LF = 0x0a;

/**
 * Hand ssh2 the peer's identification line in one read.
 *
 * ssh2 (1.17) parses the line across two reads at most: from a third read on it drops the bytes it had
 * buffered, and the connection fails with "Greetings from clients not permitted" (server side) or an
 * invalid header (client side), closed without a word. A peer is free to send the line in as many TCP
 * segments as it likes (a slow or lossy link, a keystroke-at-a-time relay, a middlebox), so vigil
 * holds the socket's first bytes until a line feed has arrived, or until MAX_HELD bytes (then ssh2 gets
 * them and refuses them itself). Lines before the identification (a server's banner) end with LF too: the
 * hold lasts until the last line received is one starting with "SSH-".
 *
 * The tap sits on `push`, under the stream's flowing/paused machinery, so ssh2 reads as it otherwise
 * would; another tap already there (the PROXY-header watch) is chained and restored, never lost.
 *
 * `from: 'client'`: a client may send no lines before its identification (ssh2 refuses them), so bytes that
 * cannot begin "SSH-" are handed on at once, for ssh2 to refuse (and the PROXY-header watch to see).
 * `onUnfit` hears of first bytes ssh2 will refuse (ssh2 closes those connections without a word), with
 * the bytes, so the refusal can be recorded.
 */
export function deliverIdentWhole(socket: net.Socket, from: 'client' | 'server', onUnfit?: (why: string, first: Buffer) => void): void {
  const own = Object.prototype.hasOwnProperty.call(socket, 'push');
  const inner = socket.push;
  let held: Buffer[] = [];
  let heldBytes = 0;
  const release = (): void => {
    if (own) socket.push = inner;
    else delete (socket as { push?: unknown }).push;
  };
  const flushHeld = (): boolean => {
    const all = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
    held = [];
    heldBytes = 0;
    return all.length === 0 ? true : inner.call(socket, all);
  };
  socket.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null || chunk === undefined) {
      // End of stream: what was held goes first.
      release();
      flushHeld();
      return inner.call(socket, chunk, encoding);
    }
    const bytes = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk, encoding) : Buffer.from(chunk as Uint8Array);
    held.push(bytes);
    heldBytes += bytes.length;
    const complete = identLineComplete(held, heldBytes);
    const notSsh = from === 'client' && !startsLikeIdent(held);
    if (!complete && !notSsh && heldBytes < MAX_HELD) return true;
    release();
    if (onUnfit) {
      const first = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
      if (notSsh) onUnfit('not an SSH identification line', first);
      else if (!complete) onUnfit(`no identification line within ${MAX_HELD} bytes`, first);
      else if (from === 'client' && !SUPPORTED_IDENT.test(first.toString('latin1', 0, first.indexOf(LF)))) onUnfit('unsupported SSH identification (SSH-2.0 only)', first);
    }
    return flushHeld();
  };
}

const SSH_DASH = Buffer.from('SSH-');
/** What ssh2 accepts from a client (its RE_IDENT): protocol 2.0 (or 1.99), a software version without spaces. */
const SUPPORTED_IDENT = /^SSH-(2\.0|1\.99)-[^ \r]+/;

/** Can the bytes held still be the start of "SSH-"? */
function startsLikeIdent(held: Buffer[]): boolean {
  let i = 0;
  for (const b of held) {
    for (let j = 0; j < b.length && i < SSH_DASH.length; j++, i++) if (b[j] !== SSH_DASH[i]) return false;
    if (i === SSH_DASH.length) break;
  }
  return true;
}

/** Has a line starting with "SSH-" been ended by a line feed in the bytes held? */
function identLineComplete(held: Buffer[], total: number): boolean {
  const last = held[held.length - 1]!;
  if (last.indexOf(LF) < 0) return false;
  const all = held.length === 1 ? last : Buffer.concat(held, total);
  let start = 0;
  for (let lf = all.indexOf(LF); lf >= 0; lf = all.indexOf(LF, start)) {
    if (all[start] === 0x53 && all[start + 1] === 0x53 && all[start + 2] === 0x48 && all[start + 3] === 0x2d) return true; // "SSH-"
    start = lf + 1;
  }
  return false;
}
