/**
 * Runs fuzz targets for a given time each and prints what they did.
 *
 *   npm run fuzz -- <target|all> [--seconds N] [--execs N] [--jobs N] [--json] [--save-corpus] [--seed N] [--out DIR] [--corpus DIR]
 *   npm run fuzz -- --module FILE [options]     (a target module outside fuzz/targets/, e.g. the engine's tests)
 *
 * --seconds is the mutation time per target, after its worker has started and replayed the corpus.
 * --execs stops a target after exactly N inputs (corpus replay included), or at --seconds, whichever
 * comes first.
 *
 * Each target runs in its own worker thread (see engine/worker.ts). This process is the watchdog: an
 * input using more than 1 s of the worker thread's CPU time (or stalling 10 s without computing) is
 * replayed once in a fresh worker, and counted as a hang if it does so again; so is the input running when
 * a worker dies of heap exhaustion, an allocation finding if it exhausts the fresh worker too. Findings are
 * written to <out>/<target>/ and printed; inputs with new coverage go to fuzz/corpus/<target>/ with
 * --save-corpus. Exit code 1 when anything was found.
 */
import { Worker } from 'node:worker_threads';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TARGETS } from './targets/index.ts';
import { CTRL, CTRL_BYTES, type Finding, type WorkerInput, type WorkerMessage } from './engine/protocol.ts';

const here = dirname(fileURLToPath(import.meta.url));
/** An input using more than this much CPU time is a hang. */
const HANG_MS = 1000;
/** An input stalled this long in wall-clock time (waiting, not computing: a promise never settled) is one too. */
const STALL_MS = 10_000;
/** Clock ticks per second of /proc/<pid>/task/<tid>/stat (USER_HZ, 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU time (ms) a thread of this process has used, or undefined when it cannot be read. */
function threadCpuMs(tid: number): number | undefined {
  if (!tid) return undefined;
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / TICKS_PER_SECOND;
  } catch {
    return undefined;
  }
}
const HEAP_LIMIT = 64 * 1024 * 1024;
const SHARED_BYTES = 1 << 16;

export interface TargetResult {
  target: string;
  execs: number;
  /** Time spent mutating (start-up and corpus replay excluded): the exec/s base. */
  seconds: number;
  blocks: number;
  features: number;
  corpus: number;
  crashes: number;
  hangs: number;
  allocs: number;
  /** Times a worker's heap filled over many inputs (not one alone, replayed first in a fresh worker): restarted. */
  heapRefills: number;
  maxHeapGrowth: number;
  findings: Finding[];
}

interface Options {
  seconds: number;
  /** Inputs per target (corpus replay included); Infinity: bounded by time only. */
  execs: number;
  /** Target modules outside fuzz/targets/, by target name (file URLs). */
  modules: Record<string, string>;
  /** Targets run at once (each in its own worker). */
  jobs: number;
  seed: number;
  out: string;
  saveCorpus: boolean;
  /** Root of the corpora (default fuzz/corpus): <root>/<target>/ and <root>/<target>/crashes/. */
  corpusRoot: string;
}

function runWorker(name: string, opts: Options, fuzzMs: number, deadline: number, skip: string[], suspect: string | undefined, onStats: (m: Extract<WorkerMessage, { type: 'stats' }>) => void, onFinding: (f: Finding) => void): Promise<{ hang?: Buffer; confirmed?: boolean; oom?: Buffer }> {
  const ctrl = new SharedArrayBuffer(CTRL_BYTES);
  const shared = new SharedArrayBuffer(SHARED_BYTES);
  const c = new Int32Array(ctrl);
  const corpusDir = join(opts.corpusRoot, name);
  const data: WorkerInput = {
    target: name,
    module: opts.modules[name],
    maxExecs: Number.isFinite(opts.execs) ? opts.execs : undefined,
    corpusDir,
    crashDir: join(opts.out, name),
    saveDir: opts.saveCorpus ? corpusDir : undefined,
    fuzzMs,
    deadline,
    seed: opts.seed,
    heapLimit: HEAP_LIMIT,
    skip,
    suspect,
    ctrl,
    shared,
  };
  const worker = new Worker(new URL('./engine/worker-entry.mjs', import.meta.url), { workerData: data, resourceLimits: { maxOldGenerationSizeMb: 768 } });
  const current = (): Buffer => Buffer.from(new Uint8Array(shared, 0, Math.min(Atomics.load(c, CTRL.length), SHARED_BYTES)));
  return new Promise((resolve) => {
    let lastExecs = -1;
    let lastChange = Date.now();
    let cpuAtChange: number | undefined;
    let done = false;
    const finish = (r: { hang?: Buffer; confirmed?: boolean; oom?: Buffer }): void => {
      if (done) return;
      done = true;
      clearInterval(watch);
      resolve(r);
    };
    // An input is timed from the moment the execution counter last moved. CPU time of the worker thread
    // decides (a loaded machine slows every input in wall-clock time, not in CPU time); wall-clock time
    // only catches an input waiting forever.
    const watch = setInterval(() => {
      const e = Atomics.load(c, CTRL.execs);
      const cpu = threadCpuMs(Atomics.load(c, CTRL.tid));
      if (e !== lastExecs || Atomics.load(c, CTRL.running) === 0) {
        lastExecs = e;
        lastChange = Date.now();
        cpuAtChange = cpu;
        return;
      }
      const cpuSpent = cpu !== undefined && cpuAtChange !== undefined ? cpu - cpuAtChange : Date.now() - lastChange;
      if (cpuSpent > HANG_MS || Date.now() - lastChange > STALL_MS) {
        const input = current();
        const confirmed = Atomics.load(c, CTRL.suspect) === 1;
        void worker.terminate();
        finish({ hang: input, confirmed });
      }
    }, 50);
    worker.on('message', (m: WorkerMessage) => (m.type === 'stats' ? onStats(m) : onFinding(m.finding)));
    worker.on('error', (err: Error & { code?: string }) => {
      if (err.code === 'ERR_WORKER_OUT_OF_MEMORY') finish({ oom: current(), confirmed: Atomics.load(c, CTRL.suspect) === 1 });
      else {
        onFinding({ kind: 'crash', signature: `worker: ${err.message}`, message: String(err.stack), file: '', count: 1, input: '' });
        finish({});
      }
    });
    worker.on('exit', () => finish({}));
  });
}

export async function fuzzTarget(name: string, opts: Options): Promise<TargetResult> {
  const start = Date.now();
  // Worker start-up and corpus replay come on top of the mutation time; this bounds everything.
  const deadline = start + opts.seconds * 1000 + 60_000;
  const findings: Finding[] = [];
  const res: TargetResult = { target: name, execs: 0, seconds: 0, blocks: 0, features: 0, corpus: 0, crashes: 0, hangs: 0, allocs: 0, heapRefills: 0, maxHeapGrowth: 0, findings };
  let execsBefore = 0;
  let fuzzedBefore = 0;
  let fuzzedMs = 0;
  const skip: string[] = [];
  const save = (kind: Finding['kind'], input: Buffer, message: string): void => {
    const hash = createHash('sha1').update(input).digest('hex').slice(0, 16);
    skip.push(hash);
    const file = `${kind}-${hash}`;
    mkdirSync(join(opts.out, name), { recursive: true });
    writeFileSync(join(opts.out, name, file), input);
    findings.push({ kind, signature: message, message, file, count: 1, input: input.toString('base64') });
  };
  let suspect: string | undefined;
  let restarts = 0;
  /** When the current worker's mutation phase began, by its own clock (undefined while it replays its corpus). */
  let fuzzingSince: number | undefined;
  for (;;) {
    fuzzingSince = undefined;
    const r = await runWorker(
      name,
      { ...opts, seed: opts.seed + restarts, execs: opts.execs - res.execs },
      Math.max(0, opts.seconds * 1000 - fuzzedMs),
      deadline,
      skip,
      suspect,
      (s) => {
        res.execs = execsBefore + s.execs;
        fuzzedMs = fuzzedBefore + s.ms;
        if (s.fuzzing) fuzzingSince = Date.now() - s.ms;
        res.blocks = Math.max(res.blocks, s.blocks);
        res.features = Math.max(res.features, s.features);
        res.corpus = Math.max(res.corpus, s.corpus);
        res.maxHeapGrowth = Math.max(res.maxHeapGrowth, s.maxHeapGrowth);
      },
      (f) => findings.push(f),
    );
    // A worker stopped by the watchdog sent no final stats: its mutation time runs to the stop.
    if (r.hang && fuzzingSince !== undefined) fuzzedMs = Math.max(fuzzedMs, fuzzedBefore + Date.now() - fuzzingSince);
    execsBefore = res.execs;
    fuzzedBefore = fuzzedMs;
    suspect = undefined;
    if (r.hang) {
      // A stall can be the machine being busy: only an input that stalls twice is a hang.
      if (r.confirmed) save('hang', r.hang, `input ran for more than ${HANG_MS} ms of CPU time (or stalled ${STALL_MS} ms), twice`);
      else suspect = r.hang.toString('base64');
    } else if (r.oom) {
      // A heap can also fill over many inputs (config: flat without coverage, ~0.3 KB more per input with
      // V8's precise coverage on, as here): only an input that exhausts a fresh worker's heap by itself is
      // a finding. Refills are counted and printed, so a slow leak of the target stays in sight.
      if (r.confirmed) save('alloc', r.oom, 'worker ran out of heap, again on this input alone in a fresh worker');
      else {
        suspect = r.oom.toString('base64');
        res.heapRefills++;
      }
    } else break;
    if (++restarts > 20 || ((Date.now() > deadline || fuzzedMs >= opts.seconds * 1000 || res.execs >= opts.execs) && !suspect)) break;
  }
  res.seconds = fuzzedMs / 1000;
  for (const f of findings) {
    if (f.kind === 'hang') res.hangs++;
    else if (f.kind === 'alloc') res.allocs++;
    else res.crashes++;
  }
  return res;
}

async function parseArgs(argv: string[]): Promise<{ targets: string[]; opts: Options; json: boolean }> {
  const opts: Options = { seconds: 10, execs: Infinity, modules: {}, jobs: 1, seed: Date.now() & 0x7fffffff, out: join(here, '..', '.fuzz-out'), saveCorpus: false, corpusRoot: join(here, 'corpus') };
  let json = false;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--seconds') opts.seconds = Number(argv[++i]);
    else if (a === '--seed') opts.seed = Number(argv[++i]);
    else if (a === '--execs') opts.execs = Number(argv[++i]);
    else if (a === '--module') {
      const url = pathToFileURL(resolve(argv[++i])).href;
      const { target } = (await import(url)) as { target: { name: string } };
      opts.modules[target.name] = url;
    }
    else if (a === '--jobs') opts.jobs = Math.max(1, Number(argv[++i]) || 1);
    else if (a === '--out') opts.out = argv[++i];
    else if (a === '--corpus') opts.corpusRoot = argv[++i];
    else if (a === '--save-corpus') opts.saveCorpus = true;
    else if (a === '--json') json = true;
    else names.push(a);
  }
  const all = [...Object.keys(TARGETS), ...Object.keys(opts.modules)];
  const targets = names.length === 0 && Object.keys(opts.modules).length > 0 ? Object.keys(opts.modules) : names.length === 0 || names.includes('all') ? Object.keys(TARGETS) : names;
  for (const t of targets) if (!all.includes(t)) throw new Error(`unknown target ${t}; known: ${all.join(', ')}`);
  if (!(opts.seconds > 0)) throw new Error('--seconds must be positive');
  if (!(opts.execs > 0)) throw new Error('--execs must be positive');
  return { targets, opts, json };
}

const pad = (s: string | number, n: number): string => String(s).padStart(n);

async function main(): Promise<void> {
  const { targets, opts, json } = await parseArgs(process.argv.slice(2));
  const results: TargetResult[] = [];
  if (!json) console.log(`${'target'.padEnd(22)} ${pad('execs', 9)} ${pad('exec/s', 7)} ${pad('blocks', 6)} ${pad('corpus', 6)} ${pad('crashes', 7)} ${pad('hangs', 5)} ${pad('allocs', 6)} ${pad('max heap growth', 15)}`);
  const print = (r: TargetResult): void => {
    if (json) return;
    console.log(`${r.target.padEnd(22)} ${pad(r.execs, 9)} ${pad(r.seconds > 0 ? Math.round(r.execs / r.seconds) : 0, 7)} ${pad(r.blocks, 6)} ${pad(r.corpus, 6)} ${pad(r.crashes, 7)} ${pad(r.hangs, 5)} ${pad(r.allocs, 6)} ${pad((r.maxHeapGrowth / 1024 / 1024).toFixed(2) + ' MiB', 15)}`);
    for (const f of r.findings) console.log(`  ${f.kind} ${f.file} (x${f.count}): ${f.message.split('\n').slice(0, 3).join(' | ')}`);
    if (r.heapRefills) console.log(`  the worker's heap filled over many inputs ${r.heapRefills} time(s); the input running then did not exhaust a fresh worker alone: restarted`);
  };
  const queue = [...targets];
  const byName = new Map<string, TargetResult>();
  await Promise.all(
    Array.from({ length: Math.min(opts.jobs, targets.length) }, async () => {
      for (let t = queue.shift(); t !== undefined; t = queue.shift()) {
        const r = await fuzzTarget(t, opts);
        byName.set(t, r);
        print(r);
      }
    }),
  );
  for (const t of targets) results.push(byName.get(t)!);
  if (json) console.log(JSON.stringify({ seconds: opts.seconds, seed: opts.seed, results }));
  process.exitCode = results.some((r) => r.findings.length > 0) ? 1 : 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
