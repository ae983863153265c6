import { execFile, spawn } from 'node:child_process';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFloodWorld, FLOOD_BUDGET, hostileLoad as load, type AllWorld } from '../support/hostile.ts';

/**
 * Hostile load at scale (issue #16 item 4), the attacker in its own process (test/support/hostile-load.ts)
 * so the memory measured is the gateway's: slowloris connections on every database/SSH listener while an
 * engineer's psql, mariadb and ssh keep working; the hostile sockets are closed by the phase deadlines
 * (the unauthenticated caps are raised so that the deadlines, not the caps, are what ends them).
 * test/core/hostile-1000.test.ts bounds memory and audit bytes under 1,000 per protocol.
 */

const BUDGET = FLOOD_BUDGET;
const hostileLoad = (args: string[]) => load({ postgres: w.ports.postgres!, mysql: w.ports.mysql!, ssh: w.ports.ssh! }, args);
const ADDRESSES = 10;

let w: AllWorld;
beforeAll(async () => {
  w = await startFloodWorld();
}, 180_000);
afterAll(async () => {
  await w?.stop();
});


describe('500 (167 per listener) slow hostile connections next to an engineer', () => {
  it('psql, mariadb and ssh keep working; every hostile socket is closed by a phase deadline', async () => {
    const attack = hostileLoad([
      '--per-listener', '167',
      '--phases', 'postgres/startup,postgres/tls_handshake,postgres/password,mysql/ssl_request,mysql/tls_handshake,mysql/handshake_response,ssh/ident,ssh/kex',
      '--addresses', String(ADDRESSES),
      '--from', '127.0.7',
    ]);
    let done = false;
    void attack.finally(() => (done = true)).catch(() => {});
    // The engineer works throughout the attack.
    let rounds = 0;
    do {
      const [p, m, s] = await Promise.all([w.psql(['-Atc', `SELECT ${rounds} + 1`]), w.mariadb(['-N', '-e', `SELECT ${rounds} + 2`]), w.ssh(`echo $((${rounds} + 3))`)]);
      expect(p.stdout.trim(), p.stderr).toBe(String(rounds + 1));
      expect(m.stdout.trim(), m.stderr).toBe(String(rounds + 2));
      expect(s.stdout.trim(), s.stderr).toBe(String(rounds + 3));
      rounds++;
    } while (!done);
    const r = await attack;
    console.log(`[hostile-scale] 500 mixed slow connections: ${JSON.stringify(r)}; engineer rounds during the attack: ${rounds}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    expect(r.started).toBe(501);
    expect(r.failed).toBe(0);
    expect(r.completed).toBe(0);
    expect(r.cut).toBe(501);
    expect(rounds).toBeGreaterThan(0);
  }, 120_000);
});
