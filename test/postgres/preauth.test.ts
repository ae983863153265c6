import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeSslRequest, encodeStartupMessage } from '../../proxies/postgres/frontend.ts';
import { startWorld, type PgWorld } from './helpers.ts';

/**
 * Limits before authentication (issue #16): a stranger who has not authenticated cannot make the gateway
 * buffer a post-auth-sized message, nor take every unauthenticated slot from one address.
 */

const GSSENC_REQUEST_CODE = 80877104;
const CLAIMED = 60 * 1024 * 1024;
const HOSTILE = 8;
const PER_SOURCE = 10;

interface Backend {
  type: string;
  body: Buffer;
}

/** Collects backend messages (the single-byte 'S'/'N' answers to SSLRequest/GSSENCRequest aside). */
function collector(sock: net.Socket | tls.TLSSocket) {
  const messages: Backend[] = [];
  let buf = Buffer.alloc(0);
  let closed = false;
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  sock.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf.length < 1 + len) break;
      messages.push({ type: String.fromCharCode(buf[0]), body: buf.subarray(5, 1 + len) });
      buf = buf.subarray(1 + len);
    }
    wake();
  });
  sock.on('error', () => {});
  sock.on('close', () => {
    closed = true;
    wake();
  });
  return {
    messages,
    isClosed: () => closed,
    /** Resolves with the first message matching `pred`, or undefined once the socket closed without one. */
    async until(pred: (m: Backend) => boolean): Promise<Backend | undefined> {
      for (;;) {
        const m = messages.find(pred);
        if (m) return m;
        if (closed) return undefined;
        await new Promise<void>((r) => waiters.push(r));
      }
    },
    closed: () => new Promise<void>((r) => (closed ? r() : sock.once('close', () => r()))),
  };
}

function errorFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const code = String.fromCharCode(body[i]);
    const end = body.indexOf(0, i + 1);
    if (end < 0) break;
    out[code] = body.subarray(i + 1, end).toString('utf8');
    i = end + 1;
  }
  return out;
}

async function plainConnect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  const s = net.connect({ host: '127.0.0.1', port, localAddress });
  await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
  return s;
}

/** SSLRequest, TLS (with the certificate when given), StartupMessage. */
async function tlsStartup(w: PgWorld, opts: { cert: boolean; localAddress?: string }) {
  const s = await plainConnect(w.port, opts.localAddress);
  s.write(encodeSslRequest());
  await new Promise((r) => s.once('data', r));
  const creds = opts.cert ? { cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key) } : {};
  const t = tls.connect({ socket: s, ca: fs.readFileSync(w.alice.ca), servername: 'localhost', ...creds });
  await new Promise((r, j) => t.once('secureConnect', r).once('error', j));
  const c = collector(t);
  t.write(encodeStartupMessage([['user', 'alice'], ['database', 'pg']]));
  return { t, c };
}

/**
 * A client that reaches the password prompt, announces a password message of CLAIMED bytes and sends
 * its body in 64 KiB chunks for as long as the gateway keeps the connection open.
 */
async function hostile(w: PgWorld): Promise<{ error: Record<string, string> | undefined; sent: number }> {
  const { t, c } = await tlsStartup(w, { cert: false });
  const prompt = await c.until((m) => m.type === 'R' || m.type === 'E');
  expect(prompt?.type).toBe('R');
  const header = Buffer.alloc(5);
  header[0] = 'p'.charCodeAt(0);
  header.writeUInt32BE(CLAIMED, 1);
  t.write(header);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  let stop = false;
  void c.until((m) => m.type === 'E').then(() => (stop = true));
  while (!stop && !c.isClosed() && sent < CLAIMED) {
    sent += chunk.length;
    if (!t.write(chunk)) await new Promise<void>((r) => { t.once('drain', r); t.once('close', r); });
  }
  const err = await c.until((m) => m.type === 'E');
  t.end();
  await c.closed();
  return { error: err && errorFields(err.body), sent };
}

describe('postgres: limits before authentication', () => {
  let w: PgWorld;
  beforeAll(async () => {
    w = await startWorld({ pre_auth: { max_message_size: '16KiB', max_per_source: PER_SOURCE } });
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('refuses an oversized password message from its length header (54000) while psql works alongside; memory does not follow the claim', async () => {
    expect((await w.psql(['-c', 'select 1'])).code).toBe(0);
    // The gateway's indexing thread up and caught up first: its start would count as growth.
    await w.tg.gw.services.auditIndex?.catchUpNow();
    const before = process.memoryUsage().rss;
    const attacks = Array.from({ length: HOSTILE }, () => hostile(w));
    const legit = await w.psql(['-Atc', 'select 40 + 2']);
    const results = await Promise.all(attacks);
    const after = process.memoryUsage().rss;
    const delta = after - before;
    console.log(`postgres pre-auth: ${HOSTILE} clients claiming ${CLAIMED} bytes each; rss before ${before} after ${after} delta ${delta}; body bytes sent per client: ${results.map((r) => r.sent).join(',')}`);
    expect(legit.code).toBe(0);
    expect(legit.stdout.trim()).toBe('42');
    for (const r of results) {
      expect(r.error?.S).toBe('FATAL');
      expect(r.error?.C).toBe('54000');
      expect(r.error?.M).toMatch(/exceeds the limit of 16384/);
      expect(r.sent).toBeLessThan(CLAIMED);
    }
    expect(delta).toBeLessThan(16 * 1024 * 1024);
    // The slots of the refused clients are free again: a normal login still works.
    expect((await w.psql(['-Atc', 'select 1'])).stdout.trim()).toBe('1');
  }, 120_000);

  it('a password message within the limit still authenticates (psql with a token)', async () => {
    const { token } = await w.tg.gw.services.identity.issueToken({ user: 'alice', roles: ['dba'] });
    const conn = `host=127.0.0.1 port=${w.port} dbname=pg user=alice sslmode=verify-full sslrootcert=${w.alice.ca}`;
    const r = await w.psql(['-qAt', '-c', 'SELECT 42'], { conn, env: { PGPASSWORD: token } });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('42');
  }, 30_000);

  it(`caps unauthenticated connections per source address (${PER_SOURCE}); another address still gets in`, async () => {
    // Held connections in the startup phase: each has had its GSSENCRequest answered, so the gateway counts it.
    const held: net.Socket[] = [];
    for (let i = 0; i < PER_SOURCE; i++) {
      const s = await plainConnect(w.port);
      s.on('error', () => {});
      s.write(encodeSslRequest(GSSENC_REQUEST_CODE));
      await new Promise((r) => s.once('data', r));
      held.push(s);
    }
    const extra = await plainConnect(w.port);
    const ec = collector(extra);
    const refused = await ec.until((m) => m.type === 'E');
    expect(errorFields(refused!.body).C).toBe('53300');
    await ec.closed();

    const other = await tlsStartup(w, { cert: true, localAddress: '127.0.0.2' });
    const ready = await other.c.until((m) => m.type === 'Z' || m.type === 'E');
    expect(ready?.type, ready && JSON.stringify(errorFields(ready.body))).toBe('Z');
    other.t.destroy();

    // Releasing one held connection frees a slot for that address.
    const gone = new Promise((r) => held[0].once('close', r));
    held[0].destroy();
    await gone;
    let again: Awaited<ReturnType<typeof tlsStartup>> | undefined;
    for (let attempt = 0; attempt < 50; attempt++) {
      // The gateway sees the close asynchronously; retry until the slot is released (hang guard: 50 tries).
      again = await tlsStartup(w, { cert: true }).catch(() => undefined);
      const m = again && (await again.c.until((x) => x.type === 'Z' || x.type === 'E'));
      if (m?.type === 'Z') break;
      again?.t.destroy();
      again = undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(again).toBeDefined();
    again!.t.destroy();
    for (const s of held) s.destroy();
  }, 60_000);
});
