import { workerData, parentPort } from 'node:worker_threads';
import { getHeapStatistics } from 'node:v8';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { BlockCoverage, blockOf } from './coverage.ts';
import { mutate, rng, type MutateContext } from './mutate.ts';
import type { FuzzTarget } from './target.ts';
import { CTRL, type WorkerInput, type WorkerMessage, type Finding } from './protocol.ts';

/**
 * The fuzzing loop of one target, in a worker thread so that the parent can stop it when one input
 * runs longer than the hang limit (a synchronous endless loop cannot be interrupted from inside) or
 * exhausts the heap. Before each input, its bytes are copied to shared memory: whatever happens, the
 * parent knows which input was running.
 *
 * Coverage is read in batches: a batch of mutated inputs runs, then the coverage of the whole batch is
 * read once (V8 reports every function of every loaded script: milliseconds per read). Only when the
 * batch reached a block never seen is it bisected to find the inputs that are new. New coverage is rare
 * after the first seconds, so batches grow and most executions pay nothing for coverage.
 */

const input = workerData as WorkerInput;
// Libraries under test may log (xterm reports parse errors on the console): millions of inputs would
// drown the runner's output. Findings are reported through the parent port, never the console.
for (const k of ['log', 'info', 'warn', 'error', 'debug'] as const) console[k] = () => undefined;
const ctrl = new Int32Array(input.ctrl);
// The runner measures this thread's CPU time (/proc/self/task/<tid>/stat) to tell a hang from a busy machine.
try {
  Atomics.store(ctrl, CTRL.tid, Number(readlinkSync('/proc/thread-self').split('/').pop()));
} catch {
  /* not Linux: the runner falls back to wall-clock time */
}
const shared = new Uint8Array(input.shared);
const post = (m: WorkerMessage): void => parentPort!.postMessage(m);

const target = ((await import(input.module ?? `../targets/${input.target}.ts`)) as { target: FuzzTarget }).target;
const maxLen = Math.min(target.maxLen ?? 4096, shared.length);
const cov = new BlockCoverage(target.covers);
const features = new Set<number>();
const blocks = new Set<number>();
const batchSeen = new Set<number>();
const corpus: Buffer[] = [];
const corpusHashes = new Set<string>();
const findings = new Map<string, Finding>();
/** Inputs run (corpus replay and mutations; re-runs of a batch to find what was new are not counted). */
let execs = 0;
const maxExecs = input.maxExecs ?? Infinity;
let maxHeapGrowth = 0;
/** When mutation began (the corpus replay before it is not counted in the rate). */
let started = 0;

const sha = (b: Buffer): string => createHash('sha1').update(b).digest('hex').slice(0, 16);

const skip = new Set(input.skip);

function loadDir(dir: string): Buffer[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith('.') && !e.name.endsWith('.md'))
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((e) => readFileSync(join(dir, e.name)))
    .filter((b) => !skip.has(sha(b)));
}

/**
 * One execution: returns the error it threw (a finding), if any. Heap growth is watched per input.
 * `rerun`: the input already ran once (measuring a batch's inputs one by one), not counted in `execs`.
 */
async function execute(data: Buffer, rerun = false): Promise<unknown> {
  shared.set(data.subarray(0, shared.length));
  Atomics.store(ctrl, CTRL.length, data.length);
  Atomics.store(ctrl, CTRL.running, 1);
  countersDirty = true;
  const before = getHeapStatistics().used_heap_size;
  let failure: unknown;
  try {
    const r = target.run(data);
    if (r instanceof Promise) await r;
  } catch (err) {
    failure = err ?? new Error('threw a nullish value');
  }
  const growth = getHeapStatistics().used_heap_size - before;
  if (growth > maxHeapGrowth) maxHeapGrowth = growth;
  if (!failure && growth > input.heapLimit) failure = new Error(`heap grew by ${growth} bytes on one input of ${data.length} bytes`);
  Atomics.store(ctrl, CTRL.running, 0);
  Atomics.add(ctrl, CTRL.execs, 1);
  if (!rerun) execs++;
  return failure;
}

function signature(err: unknown): string {
  const e = err as Error;
  const frame = (e?.stack ?? '').split('\n').find((l) => l.includes('/work/') || l.includes('file://')) ?? '';
  return `${e?.name}: ${String(e?.message).replace(/\d+/g, 'N').slice(0, 100)} @ ${frame.trim().replace(/:\d+\)?$/, '')}`;
}

function record(err: unknown, data: Buffer, kind: Finding['kind']): void {
  const sig = signature(err);
  const f = findings.get(sig);
  if (f) {
    f.count++;
    return;
  }
  const file = `${kind}-${sha(data)}`;
  const finding: Finding = { kind, signature: sig, message: String((err as Error)?.stack ?? err).split('\n').slice(0, 6).join('\n'), file, count: 1, input: data.toString('base64') };
  findings.set(sig, finding);
  if (input.crashDir) {
    mkdirSync(input.crashDir, { recursive: true });
    writeFileSync(join(input.crashDir, file), data);
  }
  post({ type: 'finding', finding });
}

function addToCorpus(data: Buffer): void {
  const h = sha(data);
  if (corpusHashes.has(h)) return;
  corpusHashes.add(h);
  corpus.push(data);
  if (input.saveDir) {
    mkdirSync(input.saveDir, { recursive: true });
    writeFileSync(join(input.saveDir, h), data);
  }
}

/**
 * Whether the coverage counters hold runs not yet read: a measured run must start from zero, but a
 * read (or reset) right after another would be a wasted inspector round trip of milliseconds.
 */
let countersDirty = true;
function takeCoverage(into: Set<number>): void {
  cov.take(into);
  countersDirty = false;
}
function resetCoverage(): void {
  if (countersDirty) cov.reset();
  countersDirty = false;
}

/** Runs one input alone and merges its features; true when it reached something new. */
async function measured(data: Buffer, rerun = false): Promise<{ fresh: boolean; failure: unknown }> {
  resetCoverage();
  const failure = await execute(data, rerun);
  const got = new Set<number>();
  takeCoverage(got);
  let fresh = false;
  for (const f of got) {
    batchSeen.add(blockOf(f));
    if (!features.has(f)) {
      features.add(f);
      blocks.add(blockOf(f));
      fresh = true;
    }
  }
  return { fresh, failure };
}

function stats(final: boolean): void {
  post({ type: 'stats', final, fuzzing: started > 0, execs, blocks: blocks.size, features: features.size, corpus: corpus.length, maxHeapGrowth, ms: started ? Date.now() - started : 0 });
}

// Phase 1: a suspected hang first (does it hang again?), then known crashes, then the corpus.
if (input.suspect) {
  Atomics.store(ctrl, CTRL.suspect, 1);
  await execute(Buffer.from(input.suspect, 'base64'), true);
  Atomics.store(ctrl, CTRL.suspect, 0);
}
for (const data of loadDir(join(input.corpusDir, 'crashes'))) {
  if (execs >= maxExecs) break;
  const { failure } = await measured(data);
  if (failure) record(failure, data, 'crash');
}
for (const dir of [input.corpusDir, ...(input.extraDirs ?? [])]) {
  for (const data of loadDir(dir)) {
    if (data.length > maxLen || execs >= maxExecs) continue;
    const { fresh, failure } = await measured(data);
    if (failure) record(failure, data, 'crash');
    if (fresh || corpus.length === 0) addToCorpus(data);
  }
}
if (corpus.length === 0) addToCorpus(Buffer.alloc(0));

// Phase 2: mutate for the given time (module loading and the corpus replay do not eat into it).
started = Date.now();
stats(false); // the runner times the mutation phase from here (a hang ends a worker without its final stats)
const deadline = Math.min(input.deadline, started + input.fuzzMs);
const rand = rng(input.seed);
const ctx: MutateContext = {
  rand,
  maxLen,
  dictionary: (target.dictionary ?? []).map((t) => Buffer.from(t)),
  other: () => corpus[Math.floor(rand() * corpus.length)],
};
// Batches grow while nothing new turns up (reading coverage costs far more than running most decoders
// once) and shrink again when one does: at most 1/16 of the time goes to coverage reads in a quiet phase.
const MIN_BATCH = 16;
const MAX_BATCH = 4096;
let batchSize = MIN_BATCH;
let lastStats = Date.now();
while (Date.now() < deadline && execs < maxExecs) {
  const batch: Buffer[] = [];
  const t0 = performance.now();
  for (let i = 0; i < batchSize && execs < maxExecs; i++) {
    // Favour recent corpus entries (they carry the newest coverage) without starving old ones.
    const pick = rand() < 0.5 ? corpus[corpus.length - 1 - Math.floor(rand() * Math.min(corpus.length, 16))] : corpus[Math.floor(rand() * corpus.length)];
    const data = mutate(pick, ctx);
    batch.push(data);
    const failure = await execute(data);
    if (failure) record(failure, data, String((failure as Error).message).startsWith('heap grew') ? 'alloc' : 'crash');
    if (performance.now() - t0 > 250) break; // slow targets: stats and the deadline stay timely
  }
  // The previous read reset the counters: this one holds exactly the batch.
  const got = new Set<number>();
  takeCoverage(got);
  const novel = novelBlocks(got);
  if (novel.size > 0) {
    await bisect(batch, novel);
    batchSize = MIN_BATCH;
  } else if (batchSize < MAX_BATCH) batchSize *= 2;
  if (Date.now() - lastStats > 1000) {
    lastStats = Date.now();
    stats(false);
  }
}

/**
 * The blocks a batch reached that no batch or measured input reached before. Batches are compared by
 * blocks only: V8 sums hit counts over the whole batch, so a batch's bucket says nothing about any one
 * input (and sums of 2 to 4096 inputs would land in a new bucket all the time, making every batch look
 * new). Hit-count buckets are features of inputs measured alone: the corpus replay and the inputs a
 * bisection narrows down to.
 */
function novelBlocks(got: Set<number>): Set<number> {
  const novel = new Set<number>();
  for (const f of got) {
    const b = blockOf(f);
    if (!batchSeen.has(b)) {
      batchSeen.add(b);
      novel.add(b);
    }
  }
  return novel;
}

/**
 * Find the inputs of a batch that reached the batch's novel blocks by halving it: a half is re-run as a
 * whole and searched further only for the novel blocks it reaches, so a batch of n inputs with one new
 * block costs about 2·log2(n) coverage reads. The input a search ends at is kept in the corpus (and
 * measured alone, for its hit-count features). Comparing a half's summed counts with per-input features
 * instead would find "new" buckets in nearly every half and re-run whole batches one input at a time.
 *
 * V8 can lose the counts of an input run alone in optimized code (a function left by an early return
 * is then not reported at all, although the same input reports its blocks within a batch): when a group
 * reached a novel block and neither half does alone, the group's inputs are kept (at most a few).
 */
async function bisect(inputs: Buffer[], novel: Set<number>): Promise<void> {
  if (inputs.length === 1) {
    await measured(inputs[0], true);
    keep(inputs[0], novel);
    return;
  }
  const mid = inputs.length >> 1;
  let left = novel;
  for (const half of [inputs.slice(0, mid), inputs.slice(mid)]) {
    if (left.size === 0) break;
    resetCoverage();
    for (const data of half) await execute(data, true);
    const got = new Set<number>();
    takeCoverage(got);
    const reached = new Set<number>();
    for (const f of got) if (left.has(blockOf(f))) reached.add(blockOf(f));
    if (reached.size > 0) await bisect(half, reached);
    left = new Set([...left].filter((b) => !reached.has(b)));
  }
  if (left.size > 0 && inputs.length <= 8) for (const data of inputs) keep(data, left);
}

function keep(data: Buffer, reached: Set<number>): void {
  for (const b of reached) blocks.add(b);
  addToCorpus(data);
}
stats(true);
cov.close();
