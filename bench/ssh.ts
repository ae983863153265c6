/**
 * SSH throughput and keystroke latency, direct to a real sshd vs through the vigil gateway (in-process,
 * recording on, as configured by the SSH test world), with the stock OpenSSH client both ways:
 *
 *   download  ssh … 'head -c 512M /dev/zero' > /dev/null
 *   upload    head -c 512M /dev/zero | ssh … 'cat > /dev/null'
 *   echo      ssh -tt … 'stty raw -echo; cat': send one byte, time until it comes back
 *
 * Runs alternate direct/vigil so machine noise hits both alike. Prints MiB/s per run, medians and the
 * ratio (target >= 0.90x), and echo p50/p99 (target: vigil p50 at most 1 ms above direct).
 *
 *   random    the same two with SIZE random bytes from a file instead of zeros (--payload zero,random)
 *
 *   npm run bench:ssh [-- --size 512M --runs 3 --samples 200 --payload zero,random]
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { startSshd, type SshdHandle } from '../test/support/sshd.ts';
import { startWorld, type SshWorld } from '../test/ssh/harness.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '512M' },
    runs: { type: 'string', default: '3' },
    samples: { type: 'string', default: '200' },
    /** zero: the issue's /dev/zero transfer. random: the same size of random bytes from a file (nothing in
     *  it compresses or is special to the recorder; what a binary download costs). */
    payload: { type: 'string', default: 'zero,random' },
  },
});
const MiB = 1024 * 1024;
const SIZE = values.size!;
const BYTES = parseHeadSize(SIZE);
const RUNS = Number(values.runs);
const SAMPLES = Number(values.samples);

/** `head -c` sizes: a number with an optional K/M/G (binary) suffix. */
function parseHeadSize(s: string): number {
  const m = /^(\d+)([KMG]?)$/.exec(s);
  if (!m) throw new Error(`--size: expected e.g. 512M, got ${s}`);
  return Number(m[1]) * { '': 1, K: 1024, M: MiB, G: 1024 * MiB }[m[2] as '' | 'K' | 'M' | 'G'];
}

const quote = (a: string) => `'${a.replace(/'/g, `'\\''`)}'`;

/** One side of the comparison: how the stock client reaches the sshd. */
interface Route {
  name: 'direct' | 'vigil';
  args: string[];
  destination: string;
}

/** Run a shell pipeline; resolves with the wall time in ms, rejects on a non-zero exit. */
function timedShell(cmd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('bash', ['-o', 'pipefail', '-c', cmd], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`exit ${code}: ${err.trim().split('\n').slice(-1)[0] || '(nothing on stderr)'}`));
    });
  });
}

const sshCmd = (r: Route, remote: string) => ['ssh', ...r.args, r.destination, remote].map(quote).join(' ');
/** What the remote side (same machine) reads for a download, and the local side for an upload. */
const source = (payload: string, file: string) => (payload === 'zero' ? `head -c ${SIZE} /dev/zero` : `cat ${quote(file)}`);
const download = (src: string) => (r: Route) => timedShell(`${sshCmd(r, src)} > /dev/null`);
const upload = (src: string) => (r: Route) => timedShell(`${src} | ${sshCmd(r, 'cat > /dev/null')}`);

/** An interactive `cat` on a remote pty in raw mode: each byte sent comes straight back. */
class EchoSession {
  private received = '';
  private waiter: { ch: string; resolve: () => void } | null = null;
  private readonly child;

  constructor(r: Route) {
    this.child = spawn('ssh', [...r.args, '-tt', r.destination, 'stty raw -echo; echo READY; exec cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => {
      this.received += d.toString('latin1');
      if (this.waiter && this.received.includes(this.waiter.ch)) {
        const w = this.waiter;
        this.waiter = null;
        this.received = '';
        w.resolve();
      }
    });
  }

  private wait(ch: string, ms = 15_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`echo of ${JSON.stringify(ch)} not seen within ${ms} ms`)), ms);
      this.waiter = { ch, resolve: () => { clearTimeout(timer); resolve(); } };
      if (this.received.includes(ch)) {
        this.waiter = null;
        this.received = '';
        clearTimeout(timer);
        resolve();
      }
    });
  }

  ready(): Promise<void> {
    return this.wait('READY');
  }

  /** Round trips in ms, one byte at a time. */
  async sample(n: number): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const ch = String.fromCharCode(0x61 + (i % 26));
      const t0 = performance.now();
      const seen = this.wait(ch);
      this.child.stdin.write(ch);
      await seen;
      out.push(performance.now() - t0);
    }
    return out;
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill('SIGTERM');
  }
}

const median = (xs: number[]) => percentile(xs, 50);
function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);

async function throughput(label: string, fn: (r: Route) => Promise<number>, routes: Route[]): Promise<void> {
  console.log(`\n${label}`);
  const rates: Record<string, number[]> = { direct: [], vigil: [] };
  // The gateway runs in this process (the bench itself only waits on children): its CPU per MiB is a
  // number that survives machine contention, unlike the MiB/s.
  const gatewayCpu: number[] = [];
  const failures: Record<string, number> = { direct: 0, vigil: 0 };
  for (let run = 1; run <= RUNS; run++) {
    const parts: string[] = [];
    for (const r of routes) {
      try {
        const cpu0 = process.cpuUsage();
        const ms = await fn(r);
        const cpu = process.cpuUsage(cpu0);
        const rate = BYTES / MiB / (ms / 1000);
        rates[r.name].push(rate);
        const perMiB = (cpu.user + cpu.system) / (BYTES / MiB);
        if (r.name === 'vigil') gatewayCpu.push(perMiB);
        parts.push(`${r.name} ${f1(rate).padStart(7)} MiB/s${r.name === 'vigil' ? ` (gateway cpu ${perMiB.toFixed(0)} µs/MiB)` : ''}`);
      } catch (e) {
        // A failed transfer is a result too (e.g. the gateway ending the session): say why and go on.
        failures[r.name]++;
        parts.push(`${r.name} FAILED (${(e as Error).message})`);
      }
    }
    console.log(`  run ${run}: ${parts.join('   ')}`);
  }
  const summary = routes.map((r) => `${r.name} ${rates[r.name].length ? `${f1(median(rates[r.name]))} MiB/s` : 'n/a'}${failures[r.name] ? ` (${failures[r.name]} of ${RUNS} failed)` : ''}`);
  const ratio = rates.vigil.length && rates.direct.length ? `, ratio ${f2(median(rates.vigil) / median(rates.direct))}x (target >= 0.90x)` : '';
  console.log(`  median: ${summary.join(', ')}${ratio}`);
  if (gatewayCpu.length) console.log(`  gateway cpu (user+sys, in-process) median ${median(gatewayCpu).toFixed(0)} µs/MiB`);
}

async function echo(routes: Route[]): Promise<void> {
  console.log(`\necho round-trip (ssh -tt, remote 'stty raw -echo; cat', one byte at a time), ${SAMPLES} samples each`);
  const sessions = routes.map((r) => ({ r, s: new EchoSession(r), samples: [] as number[] }));
  try {
    for (const x of sessions) {
      await x.s.ready();
      await x.s.sample(20); // warm-up
    }
    // Interleave blocks so both routes see the same background load.
    const block = 50;
    for (let done = 0; done < SAMPLES; done += block) {
      for (const x of sessions) x.samples.push(...(await x.s.sample(Math.min(block, SAMPLES - done))));
    }
  } finally {
    for (const x of sessions) x.s.close();
  }
  const p50: Record<string, number> = {};
  for (const x of sessions) {
    p50[x.r.name] = percentile(x.samples, 50);
    console.log(`  ${x.r.name.padEnd(6)} p50 ${f2(p50[x.r.name])} ms   p99 ${f2(percentile(x.samples, 99))} ms`);
  }
  if (p50.vigil !== undefined) console.log(`  vigil adds ${f2(p50.vigil - p50.direct)} ms at p50 (target <= 1 ms)`);
}

async function main(): Promise<void> {
  let world: SshWorld | undefined;
  let sshd: SshdHandle;
  const routes: Route[] = [];
  let vigilNote = '';
  try {
    world = await startWorld();
    sshd = world.sshd;
  } catch (e) {
    vigilNote = `vigil side pending: the gateway's SSH proxy did not start (${(e as Error).message.split('\n')[0]})`;
    sshd = await startSshd();
  }
  routes.push({ name: 'direct', args: sshd.sshArgs(), destination: sshd.destination });
  if (world) {
    const alice = await world.issue();
    const vigil: Route = { name: 'vigil', args: world.opts(alice), destination: `${sshd.user}@web1@127.0.0.1` };
    try {
      await timedShell(sshCmd(vigil, 'true'));
      routes.push(vigil);
    } catch (e) {
      vigilNote = `vigil side pending: a login through the gateway failed (${(e as Error).message})`;
    }
  }
  const version = await new Promise<string>((resolve) => {
    const c = spawn('ssh', ['-V'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let v = '';
    c.stderr.on('data', (d: Buffer) => (v += d.toString()));
    c.on('close', () => resolve(v.trim()));
  });
  console.log(`ssh bench: ${SIZE} (${BYTES / MiB} MiB) each way, ${RUNS} alternating runs; ${version}; sshd on 127.0.0.1:${sshd.port}`);
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (other work on the machine skews absolute numbers; the alternation keeps the ratio fair)`);
  console.log(routes.length > 1 ? `vigil: in-process gateway on 127.0.0.1:${world!.port} (recording on) → same sshd` : vigilNote);
  try {
    const payloads = values.payload!.split(',').map((p) => p.trim());
    let randomFile = '';
    if (payloads.includes('random')) {
      randomFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-ssh-')), 'random.bin');
      fs.writeFileSync(randomFile, crypto.randomBytes(BYTES));
      fs.chmodSync(path.dirname(randomFile), 0o755);
      fs.chmodSync(randomFile, 0o644); // read by the sshd login user for downloads
    }
    for (const p of payloads) {
      if (p !== 'zero' && p !== 'random') throw new Error(`--payload: expected zero and/or random, got ${p}`);
      const src = source(p, randomFile);
      await throughput(`download (${p}): ssh … '${src}' > /dev/null`, download(src), routes);
      await throughput(`upload (${p}): ${src} | ssh … 'cat > /dev/null'`, upload(src), routes);
    }
    if (randomFile) fs.rmSync(path.dirname(randomFile), { recursive: true, force: true });
    await echo(routes);
    if (world && routes.length > 1) {
      // Every vigil transfer must have moved all its bytes (the gateway counts them per session).
      const ends = world.eventsOf('session.end').map((e) => e.details as Record<string, number>);
      const full = ends.filter((d) => d.bytes_to_client >= BYTES || d.bytes_from_client >= BYTES).length;
      console.log(`\ncheck: ${full} of ${2 * RUNS * values.payload!.split(',').length} vigil transfers recorded >= ${BYTES} bytes in session.end`);
    }
    if (vigilNote && routes.length > 1) console.log(vigilNote);
  } finally {
    if (world) await world.stop();
    else await sshd.stop();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
