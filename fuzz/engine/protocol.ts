/** Messages and shared memory layout between the runner and a target's worker. */

/** Int32 slots of the shared control array. */
export const CTRL = {
  /** Executions so far: the heartbeat the runner watches. */
  execs: 0,
  /** Length of the input being run (its bytes are in the shared input buffer). */
  length: 1,
  /** 1 while an input is running. */
  running: 2,
  /** 1 while a suspected hang is being replayed. */
  suspect: 3,
  /** The worker thread's Linux thread id (0 where unknown): the runner reads its CPU time. */
  tid: 4,
} as const;

/** Size of the shared control array in bytes. */
export const CTRL_BYTES = 32;

export interface WorkerInput {
  target: string;
  /** The target's module (file URL); default fuzz/targets/<target>.ts. */
  module?: string;
  corpusDir: string;
  extraDirs?: string[];
  /** Where new findings are written (none: only reported). */
  crashDir?: string;
  /** Where inputs with new coverage are written (none: kept in memory only). */
  saveDir?: string;
  /** Mutation time, counted from when the corpus has been replayed. */
  fuzzMs: number;
  /** Wall-clock time the worker must stop by, whatever happens. */
  deadline: number;
  /** Inputs this worker may still run (corpus replay included); none: no limit. */
  maxExecs?: number;
  seed: number;
  heapLimit: number;
  /** Inputs already found to hang or exhaust the heap (sha1, 16 hex digits): not replayed again. */
  skip: string[];
  /** A suspected hang, replayed first (base64). */
  suspect?: string;
  ctrl: SharedArrayBuffer;
  shared: SharedArrayBuffer;
}

export interface Finding {
  kind: 'crash' | 'hang' | 'alloc';
  signature: string;
  message: string;
  /** File name the input was saved under. */
  file: string;
  count: number;
  /** The input, base64. */
  input: string;
}

export type WorkerMessage =
  | { type: 'finding'; finding: Finding }
  | { type: 'stats'; final: boolean; fuzzing: boolean; execs: number; blocks: number; features: number; corpus: number; maxHeapGrowth: number; ms: number };
