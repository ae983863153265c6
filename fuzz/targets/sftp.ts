import { SftpFramer } from '../../proxies/ssh/sftp/framer.ts';
import { decodeRequest, decodeResponse } from '../../proxies/ssh/sftp/decode.ts';
import { SftpDecodeError } from '../../proxies/ssh/sftp/errors.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, chunksAt, splitPoints, type FuzzTarget } from '../engine/target.ts';

const WRITE = 6;
const DATA = 103;

function run(chunks: Buffer[], server: boolean): { out: string[]; error?: string } {
  const out: string[] = [];
  const f = new SftpFramer({
    maxPacket: 1 << 16,
    headBytes: 64,
    streamed: (t) => t === (server ? DATA : WRITE),
    onPacket: (body, len) => {
      const d = server ? decodeResponse(body, len) : decodeRequest(body, len);
      out.push(JSON.stringify(d, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)));
    },
  });
  try {
    for (const c of chunks) f.push(c);
  } catch (err) {
    // The decoders' own errors (SftpDecodeError, and the SSH wire reader's SshWireError, a
    // ProtocolError) are the only acceptable failures: anything else would reach the observer as a
    // disguised malfunction.
    if (!(err instanceof SftpDecodeError) && !(err instanceof ProtocolError)) throw err;
    return { out, error: err.code };
  }
  return { out };
}

/**
 * SFTP packets of either direction: framer + request/response decoders, with split-invariance. The
 * first input byte says which side sent the stream.
 */
export const target: FuzzTarget = {
  name: 'sftp',
  covers: ['proxies/ssh/sftp/'],
  maxLen: 4096,
  dictionary: [Buffer.from([0, 0, 0, 5, 1, 0, 0, 0, 3]), Buffer.from([0, 0, 0, 5, 2, 0, 0, 0, 3]), Buffer.from([0x65]), Buffer.from([0x66]), Buffer.from([0x67]), Buffer.from([0xc8]), 'posix-rename@openssh.com', 'copy-data', 'hardlink@openssh.com', Buffer.from([0, 0, 0, 0x0f])],
  run(data) {
    const server = data.length > 0 && (data[0] & 1) === 1;
    const body = data.subarray(1);
    const whole = run([body], server);
    for (const p of splitPoints(body.length, 8)) {
      const split = run(chunksAt(body, [p, Math.floor(p / 2)]), server);
      check(JSON.stringify(split) === JSON.stringify(whole), `SFTP framing/decoding differs when split at ${p}`);
    }
  },
};
