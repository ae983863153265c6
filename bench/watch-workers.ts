/**
 * Live watch latency across gateway.workers: from a keystroke on the engineer's side to the watcher's
 * screen, through `vigil serve` with workers 1 (the session and the watcher in one process: the baseline)
 * and with workers 2 (the session in a worker, whose recording is relayed over IPC to the primary that
 * serves the watcher), alternating in one run so that machine noise hits both alike. Prints p50/p99 per
 * route and round, and the ratios of workers 2 to workers 1.
 *
 *   npm run bench:watch-workers [-- --rounds 3 --samples 100]
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { startSshd } from '../test/support/sshd.ts';
import { startTestGateway } from '../test/support/gateway.ts';
import { startGatewayProcess } from '../test/support/gateway-process.ts';
import { tempDir } from '../test/support/tmp.ts';
import { median } from './stats.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, samples: { type: 'string', default: '100' } } });
const ROUNDS = Number(values.rounds);
const SAMPLES = Number(values.samples);
const ROUTES = [1, 2];

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
const f1 = (n: number) => n.toFixed(1);

/** Resolves waiters when `text()` contains their token, checked on each `tick`. */
function seen(text: () => string) {
  let waiters: { token: string; resolve: (t: number) => void }[] = [];
  const tick = () => {
    const t = performance.now();
    const s = text();
    waiters = waiters.filter((w) => !(s.includes(w.token) && (w.resolve(t), true)));
  };
  const wait = (token: string, ms = 10_000) =>
    new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${token} not seen within ${ms} ms`)), ms);
      waiters.push({ token, resolve: (t) => (clearTimeout(timer), resolve(t)) });
      tick();
    });
  return { tick, wait };
}

async function main(): Promise<void> {
  const sshd = await startSshd();
  const base = tempDir('vigil-bench-watch-workers-');
  try {
    const config = {
      data_dir: path.join(base, 'data'),
      targets: [{ name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }],
      roles: [{ name: 'engineer', targets: ['*'], logins: ['*'] }],
    };
    const tg = await startTestGateway(config, base);
    const [alice, audrey] = await Promise.all([tg.issue({ user: 'alice', roles: ['engineer'] }), tg.issue({ user: 'audrey', roles: ['auditor'] })]);
    await tg.stop();

    /** One route, one round: SAMPLES keystrokes, each timed to the watcher's stream. */
    const measure = async (workers: number): Promise<number[]> => {
      const gp = await startGatewayProcess({ ...config, gateway: { workers } }, base);
      try {
        const knownHosts = path.join(base, 'known_hosts');
        fs.writeFileSync(knownHosts, `[127.0.0.1]:${gp.ports.ssh} ${gp.sshHostKey}\n`);
        const ssh = spawn('ssh', [
          '-F', '/dev/null', '-p', String(gp.ports.ssh), '-o', `IdentityFile=${alice.sshKey}`, '-o', `CertificateFile=${alice.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes',
          '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', '-tt', `${sshd.user}@web1@127.0.0.1`, 'stty raw -echo; echo READY; exec cat',
        ], { stdio: ['pipe', 'pipe', 'pipe'] });
        let own = '';
        const ownSeen = seen(() => own);
        ssh.stdout.on('data', (d: Buffer) => ((own += d.toString('latin1')), ownSeen.tick()));
        await ownSeen.wait('READY', 30_000);
        const id = await new Promise<string>((resolve, reject) => {
          https
            .get(`https://127.0.0.1:${gp.ports.api}/v1/sessions?live=1`, { ca: fs.readFileSync(audrey.ca), cert: fs.readFileSync(audrey.crt), key: fs.readFileSync(audrey.key) }, (res) => {
              let t = '';
              res.on('data', (c) => (t += c));
              res.on('end', () => resolve((JSON.parse(t) as { sessions: { id: string }[] }).sessions[0]!.id));
            })
            .on('error', reject);
        });
        let watched = '';
        const watchSeen = seen(() => watched);
        const ws = new WebSocket(`wss://127.0.0.1:${gp.ports.api}/v1/sessions/${id}/watch?from=now`, { cert: fs.readFileSync(audrey.crt), key: fs.readFileSync(audrey.key), ca: fs.readFileSync(audrey.ca) });
        ws.on('message', (d) => {
          const m = JSON.parse(d.toString()) as { type: string; events?: [number, string, unknown][] };
          if (m.type !== 'cast') return;
          for (const [, code, data] of m.events ?? []) if (code === 'o' && typeof data === 'string') watched += data;
          watchSeen.tick();
        });
        await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));
        const lat: number[] = [];
        for (let i = 0; i < SAMPLES + 10; i++) {
          const token = `<${workers}.${i.toString(36)}>`;
          const t0 = performance.now();
          const b = watchSeen.wait(token);
          ssh.stdin.write(token);
          const t = await b;
          if (i >= 10) lat.push(t - t0); // the first ten warm up
          if (watched.length > 1 << 16) watched = watched.slice(-256);
          if (own.length > 1 << 16) own = own.slice(-256);
        }
        ws.close();
        ssh.kill();
        return lat;
      } finally {
        await gp.stop();
      }
    };

    console.log(`live watch latency, keystroke to the watcher's stream, vigil serve with workers ${ROUTES.join(' vs ')}, ${ROUNDS} rounds x ${SAMPLES} samples`);
    const p50s = new Map<number, number[]>(ROUTES.map((w) => [w, []]));
    const p99s = new Map<number, number[]>(ROUTES.map((w) => [w, []]));
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate which route goes first.
      for (const w of round % 2 ? ROUTES : [...ROUTES].reverse()) {
        const lat = await measure(w);
        p50s.get(w)!.push(pct(lat, 50));
        p99s.get(w)!.push(pct(lat, 99));
        console.log(`  round ${round}, workers ${w}: p50 ${f1(pct(lat, 50))} ms  p99 ${f1(pct(lat, 99))} ms`);
      }
    }
    const [one, two] = ROUTES;
    const m = (x: Map<number, number[]>, w: number) => median(x.get(w)!);
    console.log(`  medians: workers ${one} p50 ${f1(m(p50s, one))} ms p99 ${f1(m(p99s, one))} ms; workers ${two} p50 ${f1(m(p50s, two))} ms p99 ${f1(m(p99s, two))} ms`);
    console.log(`  ratio workers ${two}/${one}: p50 ${(m(p50s, two) / m(p50s, one)).toFixed(2)}x  p99 ${(m(p99s, two) / m(p99s, one)).toFixed(2)}x`);
  } finally {
    await sshd.stop();
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
