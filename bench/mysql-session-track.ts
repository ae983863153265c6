/**
 * What relaying without zero-copy costs for clients that did not ask for CLIENT_SESSION_TRACK: vigil
 * always uses session tracking towards the backend and, for such clients, frames the server's responses
 * packet by packet to cut the session-state block out of OK packets. Same gateway, same MariaDB, one run:
 *
 *   tracked  a raw client with CLIENT_SESSION_TRACK (the relay writes the server's bytes as read)
 *   plain    a raw client without it (responses framed and OK packets rewritten)
 *
 * Each round runs --queries sequential `SELECT seq, 'xxxx…' FROM seq_1_to_N` on both, alternating; prints
 * the median per-query latency per route and round, the medians over rounds, plain/tracked and the load.
 *
 *   npx tsx bench/mysql-session-track.ts [-- --queries 2000 --rows 100 --rounds 5]
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { startWorld } from '../test/mysql/helpers.ts';
import { rawLogin, RAW_CAPS, type RawClient } from '../test/mysql/raw-client.ts';
import { encodePacket } from '../proxies/mysql/framing.ts';
import { ResponseTracker } from '../proxies/mysql/response.ts';
import { CLIENT } from '../proxies/mysql/wire.ts';
import { median } from './stats.ts';

const { values } = parseArgs({ options: { queries: { type: 'string', default: '2000' }, rows: { type: 'string', default: '100' }, rounds: { type: 'string', default: '5' } } });
const QUERIES = Number(values.queries);
const ROWS = Number(values.rows);
const ROUNDS = Number(values.rounds);

async function runQueries(c: RawClient, caps: number): Promise<number> {
  const sql = Buffer.concat([Buffer.from([0x03]), Buffer.from(`SELECT seq, REPEAT('x', 40) FROM seq_1_to_${ROWS}`)]);
  const times: number[] = [];
  for (let i = 0; i < QUERIES; i++) {
    const t = new ResponseTracker(caps);
    t.expect('results');
    const t0 = performance.now();
    c.send(encodePacket(0, sql));
    for (;;) if (t.onPacket((await c.next()).payload)) break;
    times.push(performance.now() - t0);
  }
  return median(times);
}

const w = await startWorld();
try {
  const plainCaps = RAW_CAPS & ~CLIENT.SESSION_TRACK;
  const tracked = await rawLogin(w.port, w.alice, 'db', 'shop');
  const plain = await rawLogin(w.port, w.alice, 'db', 'shop', plainCaps);
  await runQueries(tracked, RAW_CAPS);
  await runQueries(plain, plainCaps);
  const rt: number[] = [];
  const rp: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which route goes first, so drift in the machine's load hits both alike.
    const a = r % 2 === 0 ? await runQueries(tracked, RAW_CAPS) : undefined;
    const b = await runQueries(plain, plainCaps);
    const a2 = a ?? (await runQueries(tracked, RAW_CAPS));
    rt.push(a2);
    rp.push(b);
    console.log(`round ${r + 1}: tracked ${(a2 * 1000).toFixed(0)} µs/query, plain ${(b * 1000).toFixed(0)} µs/query, load ${os.loadavg()[0]!.toFixed(1)}`);
  }
  const mt = median(rt);
  const mp = median(rp);
  console.log(`median: tracked ${(mt * 1000).toFixed(0)} µs, plain ${(mp * 1000).toFixed(0)} µs, plain/tracked ${(mp / mt).toFixed(2)}x (${ROWS} rows per query, ${QUERIES} queries per round, load ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}, ${os.cpus().length} cores)`);
  tracked.socket.destroy();
  plain.socket.destroy();
} finally {
  await w.stop();
}
