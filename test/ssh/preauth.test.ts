import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';

/**
 * SSH before authentication (issue #16): one source address cannot take every unauthenticated slot.
 * Message sizes before authentication are bounded by ssh2 itself (its packet limit), not configured here.
 */

const PER_SOURCE = 4;

/** Connect and resolve with the first bytes the server sends, or undefined if it closes without any. */
async function firstBytes(port: number, localAddress = '127.0.0.1'): Promise<{ socket: net.Socket; data: string | undefined }> {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => {});
  const data = await new Promise<string | undefined>((resolve) => {
    socket.once('data', (d: Buffer) => resolve(d.toString('latin1')));
    socket.once('close', () => resolve(undefined));
  });
  return { socket, data };
}

describe('ssh: limits before authentication', () => {
  let tg: TestGateway;
  beforeAll(async () => {
    tg = await startTestGateway({ pre_auth: { max_per_source: PER_SOURCE } });
  }, 60_000);
  afterAll(async () => {
    await tg?.stop();
  });

  it(`drops the connection over ${PER_SOURCE} unauthenticated ones from one address; another address still gets the greeting`, async () => {
    const held: net.Socket[] = [];
    for (let i = 0; i < PER_SOURCE; i++) {
      const c = await firstBytes(tg.ports.ssh!);
      expect(c.data).toMatch(/^SSH-2\.0-vigil/);
      held.push(c.socket);
    }
    const extra = await firstBytes(tg.ports.ssh!);
    expect(extra.data).toBeUndefined();

    const other = await firstBytes(tg.ports.ssh!, '127.0.0.2');
    expect(other.data).toMatch(/^SSH-2\.0-vigil/);
    other.socket.destroy();

    // A released slot is usable again (the gateway sees the close asynchronously: retry, 50 tries as hang guard).
    held.shift()!.destroy();
    let again: string | undefined;
    for (let i = 0; i < 50 && !again; i++) {
      const c = await firstBytes(tg.ports.ssh!);
      again = c.data;
      if (again) held.push(c.socket);
      else await new Promise((r) => setTimeout(r, 50));
    }
    expect(again).toMatch(/^SSH-2\.0-vigil/);
    for (const s of held) s.destroy();
  }, 30_000);
});
