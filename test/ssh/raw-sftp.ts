import { spawn } from 'node:child_process';
import { waitFor } from '../support/tmp.ts';
import { encodePacket, T } from '../ssh-codec/sftp-support.ts';

export const init = (version = 3) => encodePacket([{ u8: T.INIT }, { u32: version }]);
export const mkdir = (id: number, p: string) => encodePacket([{ u8: T.MKDIR }, { u32: id }, { str: p }, { attrs: {} }]);

/** A raw sftp subsystem channel (`ssh -s … sftp`): packets go in as bytes, replies are counted. */
export function rawSftp(args: string[]) {
  const child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = Buffer.alloc(0);
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out = Buffer.concat([out, d])));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  child.stdin.on('error', () => {});
  const exited = new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  const packets = () => {
    let n = 0;
    for (let off = 0; off + 4 <= out.length; off += 4 + out.readUInt32BE(off)) if (off + 4 + out.readUInt32BE(off) <= out.length) n++;
    return n;
  };
  return {
    child,
    exited,
    stderr: () => err,
    send: (b: Buffer) => child.stdin.write(b),
    replies: (n: number) => waitFor(() => packets() >= n, 10_000, `${n} sftp replies`),
  };
}

