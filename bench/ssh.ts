/**
 * SSH throughput and keystroke latency, direct to a real sshd vs through the vigil gateway (in-process,
 * recording on, as configured by the SSH test world), with the stock OpenSSH client both ways:
 *
 *   download  ssh … 'head -c 512M /dev/zero' > /dev/null
 *   upload    head -c 512M /dev/zero | ssh … 'cat > /dev/null'
 *   echo      ssh -tt … 'stty raw -echo; cat': send one byte, time until it comes back
 *
 * Runs alternate direct/relay/vigil so machine noise hits all alike. Prints MiB/s per run, medians and the
 * ratio (target >= 0.90x), and echo p50/p99 (target: vigil p50 at most 1 ms above direct).
 *
 *   random    the same two with SIZE random bytes from a file instead of zeros (--payload zero,random)
 *   relay     the ceiling: a bare ssh2 relay in this process (same ssh2, same negotiated ciphers on both
 *             legs as vigil; no certificates, authorization, recording or audit, plain stream pipes).
 *             What vigil could reach at best with ssh2 terminating SSH on both sides.
 *   --cipher  make the stock client ask for this cipher on every route (fair: direct gets it too);
 *             default: each side's own preference, as a stock setup negotiates.
 *
 *   npm run bench:ssh [-- --size 512M --runs 3 --samples 200 --payload zero,random --routes direct,relay,vigil --cipher NAME]
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';
import ssh2 from 'ssh2';
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
    routes: { type: 'string', default: 'direct,relay,vigil' },
    cipher: { type: 'string' },
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
type RouteName = 'direct' | 'relay' | 'vigil';
interface Route {
  name: RouteName;
  args: string[];
  destination: string;
}

/** A finished shell pipeline: wall time, and the CPU of the local processes (ssh client, head/cat). */
interface Timed {
  ms: number;
  clientCpuMs: number;
}

/** Run a shell pipeline; resolves with its wall time and its processes' CPU, rejects on a non-zero exit. */
function timedShell(cmd: string): Promise<Timed> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    // `times` prints the CPU of the shell's finished children (user, then system) on its last line.
    const child = spawn('bash', ['-o', 'pipefail', '-c', `${cmd}; rc=$?; times >&2; exit $rc`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      const lines = err.trim().split('\n');
      const times = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/.exec(lines.at(-1) ?? '');
      const clientCpuMs = times ? (Number(times[1]) * 60 + Number(times[2]) + Number(times[3]) * 60 + Number(times[4])) * 1000 : NaN;
      if (code === 0) resolve({ ms, clientCpuMs });
      else reject(new Error(`exit ${code}: ${lines.slice(0, -2).at(-1) || '(nothing on stderr)'}`));
    });
  });
}

/** CPU ms of the sshd and every session process it has reaped (their children included), from /proc. */
function sshdCpuReader(sshd: SshdHandle): () => number {
  const pid = fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .find((d) => {
      try {
        return fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(sshd.configFile);
      } catch {
        return false;
      }
    });
  const tick = 1000 / 100; // USER_HZ
  return () => {
    if (!pid) return NaN;
    // Fields after "(comm) ": state is [0], utime/stime/cutime/cstime are [11..14].
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * tick;
  };
}

const sshCmd = (r: Route, remote: string) => ['ssh', ...r.args, r.destination, remote].map(quote).join(' ');
/** What the remote side (same machine) reads for a download, and the local side for an upload. */
const source = (payload: string, file: string) => (payload === 'zero' ? `head -c ${SIZE} /dev/zero` : `cat ${quote(file)}`);
const download = (src: string) => (r: Route): Promise<Timed> => timedShell(`${sshCmd(r, src)} > /dev/null`);
const upload = (src: string) => (r: Route): Promise<Timed> => timedShell(`${src} | ${sshCmd(r, 'cat > /dev/null')}`);

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

/** The gateway's CPU per MiB of one transfer kind (medians of the vigil runs), and its kernel share. */
interface GatewayCpu {
  total: number;
  sys: number;
}

async function throughput(label: string, fn: (r: Route) => Promise<Timed>, routes: Route[], sshdCpu: () => number): Promise<GatewayCpu | undefined> {
  console.log(`\n${label}`);
  const rates: Record<string, number[]> = { direct: [], relay: [], vigil: [] };
  // The gateway (and the ceiling relay) run in this process (the bench itself only waits on children):
  // their CPU per MiB is a number that survives machine contention, unlike the MiB/s. The client's and
  // the sshd's CPU per MiB come from the shell (`times`) and /proc; together they say how much CPU a MiB
  // costs the whole machine on each route.
  const cpuPerMiB: Record<string, number[]> = { relay: [], vigil: [] };
  const sysPerMiB: number[] = [];
  const machinePerMiB: Record<string, number[]> = { direct: [], relay: [], vigil: [] };
  const failures: Record<string, number> = { direct: 0, relay: 0, vigil: 0 };
  const mib = BYTES / MiB;
  for (let run = 1; run <= RUNS; run++) {
    const parts: string[] = [];
    for (const r of routes) {
      try {
        const cpu0 = process.cpuUsage();
        const sshd0 = sshdCpu();
        const t = await fn(r);
        const cpu = process.cpuUsage(cpu0);
        // The sshd reaps its session process a moment after the client is gone.
        await new Promise((resolve) => setTimeout(resolve, 300));
        const sshdMs = sshdCpu() - sshd0;
        const rate = mib / (t.ms / 1000);
        rates[r.name].push(rate);
        const perMiB = (cpu.user + cpu.system) / mib;
        if (r.name !== 'direct') cpuPerMiB[r.name].push(perMiB);
        if (r.name === 'vigil') sysPerMiB.push(cpu.system / mib);
        const client = t.clientCpuMs / mib;
        const server = sshdMs / mib;
        const gateway = r.name === 'direct' ? 0 : perMiB / 1000;
        machinePerMiB[r.name].push(client + server + gateway);
        const split = `client ${f2(client)}${r.name === 'direct' ? '' : ` + ${r.name === 'vigil' ? 'gateway' : 'relay'} ${f2(gateway)}`} + sshd ${f2(server)} ms/MiB`;
        parts.push(`${r.name} ${f1(rate).padStart(6)} MiB/s [${split}]`);
      } catch (e) {
        // A failed transfer is a result too (e.g. the gateway ending the session): say why and go on.
        failures[r.name]++;
        parts.push(`${r.name} FAILED (${(e as Error).message})`);
      }
    }
    console.log(`  run ${run}: ${parts.join('   ')}`);
  }
  const summary = routes.map((r) => `${r.name} ${rates[r.name].length ? `${f1(median(rates[r.name]))} MiB/s` : 'n/a'}${failures[r.name] ? ` (${failures[r.name]} of ${RUNS} failed)` : ''}`);
  const ratio = (a: RouteName, b: RouteName) => (rates[a].length && rates[b].length ? median(rates[a]) / median(rates[b]) : undefined);
  const ratios = [
    ratio('vigil', 'direct') !== undefined ? `vigil/direct ${f2(ratio('vigil', 'direct')!)}x (target >= 0.90x)` : '',
    ratio('relay', 'direct') !== undefined ? `relay/direct ${f2(ratio('relay', 'direct')!)}x (ceiling)` : '',
    ratio('vigil', 'relay') !== undefined ? `vigil/relay ${f2(ratio('vigil', 'relay')!)}x` : '',
  ].filter(Boolean);
  console.log(`  median: ${summary.join(', ')}${ratios.length ? `; ${ratios.join(', ')}` : ''}`);
  const cpu = (['relay', 'vigil'] as const).filter((n) => cpuPerMiB[n].length).map((n) => `${n === 'vigil' ? 'gateway' : 'relay'} ${median(cpuPerMiB[n]).toFixed(0)} µs/MiB`);
  if (cpu.length) console.log(`  in-process cpu (user+sys) median: ${cpu.join(', ')}`);
  const machine = routes.filter((r) => machinePerMiB[r.name].length).map((r) => `${r.name} ${f2(median(machinePerMiB[r.name]))}`);
  const direct = machinePerMiB.direct.length ? median(machinePerMiB.direct) : NaN;
  const bound = (['relay', 'vigil'] as const).filter((n) => machinePerMiB[n].length && direct > 0).map((n) => `${n} ${f2(direct / median(machinePerMiB[n]))}x`);
  if (machine.length) console.log(`  machine cpu per MiB (client + gateway/relay + sshd) median: ${machine.join(', ')} ms${bound.length ? `; when the cores are the limit the throughput ratio tends to direct/route cpu: ${bound.join(', ')}` : ''}`);
  return cpuPerMiB.vigil.length ? { total: median(cpuPerMiB.vigil), sys: median(sysPerMiB) } : undefined;
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

/** Negotiated cipher names of one ssh2 handshake, "cs" and "sc" folded into one when equal. */
function cipherOf(n: { cs: { cipher: string }; sc: { cipher: string } }): string {
  return n.cs.cipher === n.sc.cipher ? n.cs.cipher : `${n.cs.cipher} / ${n.sc.cipher}`;
}

/**
 * The ceiling route: the smallest ssh2 relay that carries the bench's sessions (exec, with or without a
 * pty) from the stock client to the same sshd — ssh2 terminates SSH on both legs exactly as in vigil, with
 * each side's default algorithms, and the bytes go through plain stream pipes. Bench-only: it accepts any
 * public key (the only client is this bench, on loopback) and logs in to the sshd with the test key.
 */
async function startBareRelay(sshd: SshdHandle): Promise<{ port: number; targetCipher: () => string; close(): Promise<void> }> {
  // The sshd's own host key (made by ssh-keygen); the client is told not to check it.
  const hostKey = fs.readFileSync(sshd.hostKeyPath);
  const targetKey = fs.readFileSync(sshd.clientKey);
  let targetCipher = '';
  const server = new ssh2.Server({ hostKeys: [hostKey] }, (conn) => {
    conn.on('error', () => {});
    conn.on('authentication', (ctx) => (ctx.method === 'publickey' ? ctx.accept() : ctx.reject(['publickey'])));
    conn.on('ready', () => {
      const backend = new ssh2.Client();
      const up = new Promise<void>((resolve, reject) => {
        backend.once('ready', resolve).once('error', reject);
      });
      up.catch(() => {}); // a session that never opens a channel does not care
      backend.on('error', () => conn.end());
      backend.once('handshake', (n) => (targetCipher = cipherOf(n)));
      backend.connect({ host: sshd.host, port: sshd.port, username: sshd.user, privateKey: targetKey, hostVerifier: () => true });
      conn.on('close', () => backend.end());
      conn.on('session', (acceptSession) => {
        const session = acceptSession();
        let pty: ssh2.PseudoTtyOptions | undefined;
        session.on('pty', (accept, _reject, info) => {
          pty = { term: info.term, cols: info.cols, rows: info.rows, width: info.width, height: info.height, modes: info.modes };
          accept?.();
        });
        session.on('exec', (accept, _reject, info) => {
          // Accepted at once (ssh2 drops data of a request not accepted in the same tick); the client's
          // bytes wait in the channel until the target's channel is there.
          const client = accept();
          up.then(() =>
            backend.exec(info.command, { pty }, (err, target) => {
              if (err) return client.close();
              target.pipe(client, { end: false });
              target.stderr.pipe(client.stderr, { end: false });
              client.pipe(target);
              let code = 255;
              target.on('exit', (c: number | null) => (code = c ?? 255));
              target.on('close', () => {
                client.exit(code);
                client.end();
              });
            }),
          ).catch(() => client.close());
        });
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as import('node:net').AddressInfo).port,
    targetCipher: () => targetCipher,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** ssh2's packet ciphers (internal module: the bench measures exactly what the gateway runs). */
interface Ssh2Crypto {
  CIPHER_INFO: Record<string, { keyLen: number; ivLen: number }>;
  createCipher(c: unknown): { allocPacket(n: number): Buffer; encrypt(p: Buffer): void };
  createDecipher(c: unknown): { decrypt(d: Buffer, p: number, end: number): unknown };
}
const ssh2Crypto = createRequire(import.meta.url)('ssh2/lib/protocol/crypto.js') as Ssh2Crypto;

/** CPU µs per MiB of one ssh2 cipher pass: encrypting 32 KiB channel-data packets, or decrypting them as
 *  they arrive in 64 KiB socket reads. Includes ssh2's per-packet work (allocation, padding, copies). */
function cipherPass(name: string, dir: 'encrypt' | 'decrypt', mib = 64): number {
  const info = ssh2Crypto.CIPHER_INFO[name];
  if (!info) return NaN;
  const key = crypto.randomBytes(info.keyLen);
  const iv = crypto.randomBytes(info.ivLen);
  const packets = (mib * MiB) / 32768;
  const payload = Buffer.alloc(9 + 32768);
  const wire: Buffer[] = [];
  const enc = ssh2Crypto.createCipher({ outbound: { onWrite: (b: Buffer) => dir === 'decrypt' && wire.push(Buffer.from(b)), cipherInfo: info, cipherKey: key, cipherIV: Buffer.from(iv), seqno: 0 } });
  const encryptAll = () => {
    for (let i = 0; i < packets; i++) {
      const p = enc.allocPacket(payload.length);
      payload.copy(p, 5);
      enc.encrypt(p);
    }
  };
  if (dir === 'encrypt') {
    encryptAll(); // warm-up
    const c0 = process.cpuUsage();
    encryptAll();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / mib;
  }
  encryptAll();
  const all = Buffer.concat(wire);
  let total = 0;
  // ssh2 decrypts in place: each run gets its own copy of the wire bytes.
  const run = (wireBytes: Buffer) => {
    const dec = ssh2Crypto.createDecipher({ inbound: { onPayload: (p: Buffer) => void (total += p.length), decipherInfo: info, decipherKey: key, decipherIV: Buffer.from(iv), seqno: 0 } });
    for (let o = 0; o < wireBytes.length; o += 65536) dec.decrypt(wireBytes, o, Math.min(wireBytes.length, o + 65536));
  };
  run(Buffer.from(all)); // warm-up
  const copy = Buffer.from(all);
  const c0 = process.cpuUsage();
  run(copy);
  const c = process.cpuUsage(c0);
  if (total !== 2 * packets * payload.length) throw new Error(`cipher check: ${name} decrypted ${total} bytes`);
  return (c.user + c.system) / mib;
}

/** CPU µs per MiB the gateway's recording store spends on 32 KiB output chunks of this payload
 *  (including its file writes on the thread pool), with the recording options the gateway uses. */
async function recordingCost(world: SshWorld, payload: 'zero' | 'random', mib = 64): Promise<number> {
  const services = world.gw.gw.services;
  const chunks = Array.from({ length: 8 }, () => (payload === 'zero' ? Buffer.alloc(32768) : crypto.randomBytes(32768)));
  const once = async (): Promise<number> => {
    const w = services.recordings.openAsciicast(`bench-split-${crypto.randomUUID()}`, 0, { width: 80, height: 24, timestamp: Math.floor(Date.now() / 1000) }, { binary: services.config.recording.binary_output });
    const c0 = process.cpuUsage();
    for (let i = 0; i < (mib * MiB) / 32768; i++) {
      w.output(chunks[i & 7]);
      if (w.onDrained && (w.queuedBytes ?? 0) > 8 * MiB) await new Promise<void>((r) => w.onDrained!(r));
    }
    await w.close();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / mib;
  };
  await once(); // warm-up
  return once();
}

/**
 * Where the gateway's CPU per MiB goes, measured in this run: the kernel (its system time during the
 * transfers), the two ssh2 cipher passes of the negotiated ciphers, the recording of the payload (output
 * only: keystrokes are off unless configured), and the rest — ssh2's framing and channel streams,
 * vigil's relay and counters, GC.
 */
async function costSplit(world: SshWorld, clientCipherName: string, targetCipherName: string, measured: Array<{ payload: 'zero' | 'random'; dir: 'download' | 'upload'; cpu: GatewayCpu }>): Promise<void> {
  console.log(`\ngateway cpu per MiB split (µs; kernel = system time of the transfers; cipher passes and recording measured in this process right after, on ssh2 and the recording store)`);
  const keystrokes = world.gw.gw.services.config.recording.keystrokes;
  const rec: Partial<Record<'zero' | 'random', number>> = {};
  for (const m of measured) {
    // Medians of three: these short measurements see the machine's load spikes too.
    const pass = (name: string, dir: 'encrypt' | 'decrypt') => median([1, 2, 3].map(() => cipherPass(name, dir)));
    const passes =
      m.dir === 'download'
        ? { [`${targetCipherName} decrypt`]: pass(targetCipherName, 'decrypt'), [`${clientCipherName} encrypt`]: pass(clientCipherName, 'encrypt') }
        : { [`${clientCipherName} decrypt`]: pass(clientCipherName, 'decrypt'), [`${targetCipherName} encrypt`]: pass(targetCipherName, 'encrypt') };
    const recording = m.dir === 'download' || keystrokes ? (rec[m.payload] ??= median([await recordingCost(world, m.payload), await recordingCost(world, m.payload), await recordingCost(world, m.payload)])) : 0;
    const cipher = Object.values(passes).reduce((a, b) => a + b, 0);
    const rest = m.cpu.total - m.cpu.sys - cipher - recording;
    const parts = [`kernel ${m.cpu.sys.toFixed(0)}`, ...Object.entries(passes).map(([k, v]) => `${k} ${v.toFixed(0)}`), `recording ${recording.toFixed(0)}`, `rest (ssh2 framing and channel streams, vigil's relay, GC; by difference) ${rest.toFixed(0)}`];
    console.log(`  ${`${m.dir} (${m.payload})`.padEnd(18)} total ${m.cpu.total.toFixed(0).padStart(5)} = ${parts.join(' + ')}`);
  }
}

/** The cipher the stock client ends up with on a route (from `ssh -v`), for the header. */
function clientCipher(r: Route): Promise<string> {
  return new Promise((resolve) => {
    const c = spawn('ssh', ['-o', 'LogLevel=DEBUG1', ...r.args, r.destination, 'true'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', () => resolve(/kex: server->client cipher: (\S+)/.exec(err)?.[1] ?? 'unknown'));
  });
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
  const wanted = values.routes!.split(',').map((r) => r.trim());
  for (const w of wanted) if (w !== 'direct' && w !== 'relay' && w !== 'vigil') throw new Error(`--routes: expected direct, relay and/or vigil, got ${w}`);
  // --cipher goes to the stock client on every route: a comparison where only one route gets a cheaper
  // cipher would measure the cipher, not the route.
  const cipherArgs = values.cipher ? ['-c', values.cipher] : [];
  routes.push({ name: 'direct', args: sshd.sshArgs(cipherArgs), destination: sshd.destination });
  let relay: Awaited<ReturnType<typeof startBareRelay>> | undefined;
  if (wanted.includes('relay')) {
    relay = await startBareRelay(sshd);
    // First occurrence of an option wins in ssh: these override the sshd's port and known_hosts.
    const args = ['-o', `Port=${relay.port}`, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', ...sshd.sshArgs(cipherArgs)];
    routes.push({ name: 'relay', args, destination: sshd.destination });
  }
  if (world && wanted.includes('vigil')) {
    const alice = await world.issue();
    const vigil: Route = { name: 'vigil', args: world.opts(alice, cipherArgs), destination: `${sshd.user}@web1@127.0.0.1` };
    try {
      await timedShell(sshCmd(vigil, 'true'));
      routes.push(vigil);
    } catch (e) {
      vigilNote = `vigil side pending: a login through the gateway failed (${(e as Error).message})`;
    }
  }
  if (!wanted.includes('direct')) routes.shift();
  const version = await new Promise<string>((resolve) => {
    const c = spawn('ssh', ['-V'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let v = '';
    c.stderr.on('data', (d: Buffer) => (v += d.toString()));
    c.on('close', () => resolve(v.trim()));
  });
  console.log(`ssh bench: ${SIZE} (${BYTES / MiB} MiB) each way, ${RUNS} alternating runs; ${version}; sshd on 127.0.0.1:${sshd.port}`);
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (other work on the machine skews absolute numbers; the alternation keeps the ratio fair)`);
  if (world && routes.some((r) => r.name === 'vigil')) console.log(`vigil: in-process gateway on 127.0.0.1:${world.port} (recording on) → same sshd`);
  else if (vigilNote) console.log(vigilNote);
  if (relay) console.log(`relay: bare ssh2 relay in this process on 127.0.0.1:${relay.port} (no auth checks, recording or audit) → same sshd: the ceiling for an ssh2 gateway`);
  // Which cipher each leg negotiated (the client's preference decides a leg; vigil is the client of its target).
  const legs: string[] = [];
  const vigilCiphers = { client: '', target: '' };
  for (const r of routes) {
    const front = await clientCipher(r);
    if (r.name === 'direct') legs.push(`direct: client→sshd ${front}`);
    else if (r.name === 'relay') legs.push(`relay: client→relay ${front}, relay→sshd ${relay!.targetCipher()}`);
    else {
      const end = world!.eventsOf('session.end').at(-1)?.details as { cipher?: { client?: string; target?: string } } | undefined;
      vigilCiphers.client = front;
      vigilCiphers.target = end?.cipher?.target ?? 'unknown';
      legs.push(`vigil: client→vigil ${front}, vigil→sshd ${vigilCiphers.target}`);
    }
  }
  console.log(`ciphers${values.cipher ? ` (client asked for ${values.cipher} on every route)` : ' (each side\'s defaults)'}: ${legs.join('; ')}`);
  try {
    const payloads = values.payload!.split(',').map((p) => p.trim());
    let randomFile = '';
    if (payloads.includes('random')) {
      randomFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-bench-ssh-')), 'random.bin');
      fs.writeFileSync(randomFile, crypto.randomBytes(BYTES));
      fs.chmodSync(path.dirname(randomFile), 0o755);
      fs.chmodSync(randomFile, 0o644); // read by the sshd login user for downloads
    }
    const measured: Parameters<typeof costSplit>[3] = [];
    const sshdCpu = sshdCpuReader(sshd);
    for (const p of payloads) {
      if (p !== 'zero' && p !== 'random') throw new Error(`--payload: expected zero and/or random, got ${p}`);
      const src = source(p, randomFile);
      const down = await throughput(`download (${p}): ssh … '${src}' > /dev/null`, download(src), routes, sshdCpu);
      const up = await throughput(`upload (${p}): ${src} | ssh … 'cat > /dev/null'`, upload(src), routes, sshdCpu);
      if (down) measured.push({ payload: p as 'zero' | 'random', dir: 'download', cpu: down });
      if (up) measured.push({ payload: p as 'zero' | 'random', dir: 'upload', cpu: up });
    }
    if (randomFile) fs.rmSync(path.dirname(randomFile), { recursive: true, force: true });
    if (world && measured.length) await costSplit(world, vigilCiphers.client, vigilCiphers.target, measured);
    await echo(routes);
    if (world && routes.some((r) => r.name === 'vigil')) {
      // Every vigil transfer must have moved all its bytes (the gateway counts them per session).
      const ends = world.eventsOf('session.end').map((e) => e.details as Record<string, number>);
      const full = ends.filter((d) => d.bytes_to_client >= BYTES || d.bytes_from_client >= BYTES).length;
      console.log(`\ncheck: ${full} of ${2 * RUNS * values.payload!.split(',').length} vigil transfers recorded >= ${BYTES} bytes in session.end`);
    }
    if (vigilNote && routes.length > 1) console.log(vigilNote);
  } finally {
    await relay?.close();
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
