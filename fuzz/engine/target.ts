/**
 * What a fuzz target is. A target feeds one input to a decoder and throws only when it found a bug:
 * errors the decoder is allowed to raise (its own error class, with a stable code) are swallowed by
 * `expectErrors`, broken invariants throw `InvariantError`.
 */
export interface FuzzTarget {
  name: string;
  /** Path fragments of the modules whose block coverage guides this target (e.g. 'proxies/postgres/'). */
  covers: string[];
  /** Largest input the mutators produce (bytes). */
  maxLen?: number;
  /** Protocol tokens the mutators insert or overwrite with. */
  dictionary?: (string | Uint8Array)[];
  /** Runs one input. May be async (file-based targets); the engine awaits it. */
  run(data: Buffer): void | Promise<void>;
}

/** An invariant of the decoder does not hold: always a finding. */
export class InvariantError extends Error {
  override name = 'InvariantError';
}

export function check(cond: unknown, message: string): asserts cond {
  if (!cond) throw new InvariantError(message);
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Runs `fn`; an error of one of `allowed` is the decoder refusing the input (fine), anything else is rethrown. */
export function expectErrors<T>(fn: () => T, ...allowed: ErrorClass[]): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (allowed.some((c) => err instanceof c) && !(err instanceof InvariantError)) return undefined;
    throw err;
  }
}

export async function expectErrorsAsync<T>(fn: () => Promise<T>, ...allowed: ErrorClass[]): Promise<T | undefined> {
  try {
    return await fn();
  } catch (err) {
    if (allowed.some((c) => err instanceof c) && !(err instanceof InvariantError)) return undefined;
    throw err;
  }
}

/** Deterministic split points for split-invariance checks: every byte for short inputs, a spread otherwise. */
export function splitPoints(len: number, max = 24): number[] {
  if (len <= max) return Array.from({ length: len + 1 }, (_, i) => i);
  const out = new Set<number>([0, 1, len - 1, len]);
  for (let i = 1; out.size < max; i++) out.add(Math.floor((len * i * 7919) / 104729) % (len + 1));
  return [...out];
}

/** Cuts `data` into chunks at the given points (sorted, within bounds). */
export function chunksAt(data: Buffer, points: number[]): Buffer[] {
  const cuts = [...new Set(points.filter((p) => p > 0 && p < data.length))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(data.subarray(prev, c));
    prev = c;
  }
  out.push(data.subarray(prev));
  return out;
}
