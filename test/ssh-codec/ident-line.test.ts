import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { deliverIdentWhole } from '../../proxies/ssh/ident-line.ts';

/** Feed `chunks` through a socket's push (as its handle would) and collect the reads a consumer sees. */
async function reads(from: 'client' | 'server', chunks: Buffer[], end = false): Promise<Buffer[]> {
  const socket = new net.Socket();
  const seen: Buffer[] = [];
  socket.on('data', (d: Buffer) => seen.push(d));
  deliverIdentWhole(socket, from);
  for (const c of chunks) socket.push(c);
  if (end) socket.push(null);
  await new Promise((r) => setImmediate(r));
  socket.destroy();
  return seen;
}
const bytesOf = (s: string) => [...Buffer.from(s, 'latin1')].map((b) => Buffer.from([b]));
const flush = () => new Promise((r) => setImmediate(r));

describe('the identification line reaches ssh2 in one read', () => {
  it('split at every byte, the line and what follows it in its last segment come as one read', async () => {
    const ident = 'SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n';
    for (let cut = 1; cut < ident.length; cut++) {
      const chunks = [Buffer.from(ident.slice(0, cut)), ...bytesOf(ident.slice(cut)), Buffer.from('\x00\x00\x01\x0c')];
      const socket = new net.Socket();
      const seen: Buffer[] = [];
      socket.on('data', (d: Buffer) => seen.push(d));
      deliverIdentWhole(socket, 'client');
      for (const c of chunks) socket.push(c);
      await flush();
      expect(seen.map((b) => b.toString('latin1'))).toEqual([ident, '\x00\x00\x01\x0c']);
      socket.destroy();
    }
  });

  it("a server's banner lines before its identification are held with it", async () => {
    const text = 'Welcome\r\nauthorised use only\r\nSSH-2.0-OpenSSH_9.2\r\n';
    const socket = new net.Socket();
    const seen: Buffer[] = [];
    socket.on('data', (d: Buffer) => seen.push(d));
    deliverIdentWhole(socket, 'server');
    for (const c of bytesOf(text)) socket.push(c);
    await flush();
    expect(seen.map((b) => b.toString('latin1'))).toEqual([text]);
    socket.destroy();
  });

  it('from a client, bytes that cannot begin "SSH-" (a PROXY header, TLS, HTTP) are handed on at once', async () => {
    for (const start of ['PROXY TCP4 ', 'GET / HTTP/1.1', '\x16\x03\x01', 'SSX']) {
      const socket = new net.Socket();
      const seen: Buffer[] = [];
      socket.on('data', (d: Buffer) => seen.push(d));
      deliverIdentWhole(socket, 'client');
      const chunks = bytesOf(start);
      for (const c of chunks) socket.push(c);
      await flush();
      expect(Buffer.concat(seen).toString('latin1')).toBe(start);
      socket.destroy();
    }
  });

  it('held bytes are not lost at end of stream, and an endless line is handed on at the bound', async () => {
    expect(Buffer.concat(await reads('client', bytesOf('SSH-2.0-cut'), true)).toString('latin1')).toBe('SSH-2.0-cut');
    const socket = new net.Socket();
    const seen: Buffer[] = [];
    socket.on('data', (d: Buffer) => seen.push(d));
    deliverIdentWhole(socket, 'client');
    socket.push(Buffer.from('SSH-2.0-'));
    for (let i = 0; i < 8; i++) {
      socket.push(Buffer.alloc(1000, 0x61));
      await flush();
    }
    expect(seen).toEqual([]); // 8,008 bytes, still under the bound: held
    socket.push(Buffer.alloc(1000, 0x61));
    await flush();
    expect(seen.map((b) => b.length)).toEqual([9008]); // over it: handed on, for ssh2 to refuse
    socket.push(Buffer.from('more'));
    await flush();
    expect(seen.map((b) => b.length)).toEqual([9008, 4]); // and the tap is gone
    socket.destroy();
  });
});
