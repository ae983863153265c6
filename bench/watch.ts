/**
 * Live watch latency: from a keystroke on the engineer's side to the watcher's screen (target p50 <= 50 ms).
 *
 * A stock OpenSSH client (`ssh -tt … 'stty raw -echo; cat'`) through the in-process gateway (recording on,
 * as the SSH test world configures it) to a real sshd; an auditor watches the session over the API's
 * WebSocket (`/v1/sessions/:id/watch?from=now`, mTLS). Each sample writes a short unique token to ssh's
 * stdin and times until the token is in the watcher's stream (`o` events of the recording as it lands),
 * and, for comparison, until it is back on the engineer's own terminal.
 *
 *   npm run bench:watch [-- --rounds 5 --samples 50]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { startWorld } from '../test/ssh/harness.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, samples: { type: 'string', default: '50' } } });
const ROUNDS = Number(values.rounds);
const SAMPLES = Number(values.samples);

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}
const f1 = (n: number) => n.toFixed(1);

/** Resolves when `text()` contains `token`, checked on each `tick`. */
class Seen {
  private waiters: { token: string; resolve: (t: number) => void }[] = [];
  constructor(private readonly text: () => string) {}
  tick(): void {
    const t = performance.now();
    const s = this.text();
    this.waiters = this.waiters.filter((w) => {
      if (!s.includes(w.token)) return true;
      w.resolve(t);
      return false;
    });
  }
  wait(token: string, ms = 10_000): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${token} not seen within ${ms} ms`)), ms);
      this.waiters.push({ token, resolve: (t) => { clearTimeout(timer); resolve(t); } });
      this.tick();
    });
  }
}

async function main(): Promise<void> {
  const w = await startWorld();
  try {
    const alice = await w.issue();
    const audrey = await w.gw.issue({ user: 'audrey', roles: ['auditor'] });
    const ssh = spawn('ssh', [...w.opts(alice), '-tt', 'web1@127.0.0.1', 'stty raw -echo; echo READY; exec cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let own = '';
    const ownSeen = new Seen(() => own);
    ssh.stdout.on('data', (d: Buffer) => {
      own += d.toString('latin1');
      ownSeen.tick();
    });
    await ownSeen.wait('READY', 20_000);
    const start = await w.gw.waitForEvent((e) => e.type === 'session.start' && e.actor.user === 'alice');

    let watched = '';
    const watchSeen = new Seen(() => watched);
    const ws = new WebSocket(`wss://127.0.0.1:${w.gw.ports.api}/v1/sessions/${start.session_id}/watch?from=now`, {
      cert: fs.readFileSync(audrey.crt),
      key: fs.readFileSync(audrey.key),
      ca: fs.readFileSync(audrey.ca),
    });
    ws.on('message', (d) => {
      const m = JSON.parse(d.toString()) as { type: string; events?: [number, string, unknown][] };
      if (m.type !== 'cast') return;
      for (const [, code, data] of m.events ?? []) if (code === 'o' && typeof data === 'string') watched += data;
      watchSeen.tick();
    });
    await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));

    console.log(`live watch latency: keystroke (ssh -tt stdin) to the watcher's stream, ${ROUNDS} rounds x ${SAMPLES} samples`);
    const all: number[] = [];
    const allOwn: number[] = [];
    let n = 0;
    for (let round = 0; round <= ROUNDS; round++) {
      const lat: number[] = [];
      const ownLat: number[] = [];
      for (let i = 0; i < SAMPLES; i++) {
        const token = `<${(n++).toString(36)}>`;
        const t0 = performance.now();
        const a = ownSeen.wait(token);
        const b = watchSeen.wait(token);
        ssh.stdin.write(token);
        const [ta, tb] = await Promise.all([a, b]);
        ownLat.push(ta - t0);
        lat.push(tb - t0);
        // Keep the buffers short (tokens are unique, so nothing is lost by trimming).
        if (own.length > 1 << 16) own = own.slice(-256);
        if (watched.length > 1 << 16) watched = watched.slice(-256);
      }
      if (round === 0) continue; // warm-up
      all.push(...lat);
      allOwn.push(...ownLat);
      console.log(`  round ${round}: watcher p50 ${f1(percentile(lat, 50))} ms  p99 ${f1(percentile(lat, 99))} ms   (own echo p50 ${f1(percentile(ownLat, 50))} ms)`);
    }
    const p50 = percentile(all, 50);
    console.log(`  all: watcher p50 ${f1(p50)} ms  p99 ${f1(percentile(all, 99))} ms; own echo p50 ${f1(percentile(allOwn, 50))} ms  p99 ${f1(percentile(allOwn, 99))} ms`);
    console.log(`  target p50 <= 50 ms: ${p50 <= 50 ? 'met' : 'NOT met'}`);
    ws.close();
    ssh.kill();
  } finally {
    await w.stop();
  }
}

await main();
