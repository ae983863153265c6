import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import xterm from '@xterm/headless';
import { NUL_RUN_CODES } from './index.ts';

/** A text event (`o`, `i`, `r`, …) or a run of NUL bytes (vigil extension: the data is the count). */
export type AsciicastEvent = [number, string, string] | [number, (typeof NUL_RUN_CODES)['o' | 'i'], number];

export interface Asciicast {
  header: { version: number; width: number; height: number; timestamp?: number; title?: string; command?: string; env?: Record<string, string> };
  events: AsciicastEvent[];
}

const isNulRun = (code: string): code is (typeof NUL_RUN_CODES)['o' | 'i'] => code === NUL_RUN_CODES.o || code === NUL_RUN_CODES.i;

/** Everything recorded on one stream (`o` output or `i` input) as text, NUL runs expanded. */
export function streamText(cast: Asciicast, stream: 'o' | 'i'): string {
  let text = '';
  for (const [, code, data] of cast.events) {
    if (code === stream) text += data;
    else if (code === NUL_RUN_CODES[stream]) text += '\0'.repeat(data as number);
  }
  return text;
}

/** Parse an asciicast v2 file. Malformed event lines are skipped (a crash may leave a partial last line). */
export function parseAsciicast(text: string): Asciicast {
  const lines = text.split('\n');
  const header = JSON.parse(lines[0]) as Asciicast['header'];
  if (header.version !== 2) throw new Error(`unsupported asciicast version ${header.version}`);
  const events: Asciicast['events'] = [];
  for (const line of lines.slice(1)) {
    if (!line) continue;
    try {
      const e = JSON.parse(line);
      if (!Array.isArray(e) || typeof e[0] !== 'number' || typeof e[1] !== 'string') continue;
      if (typeof e[2] === 'string') events.push(e as [number, string, string]);
      else if (isNulRun(e[1]) && Number.isSafeInteger(e[2]) && e[2] >= 0) events.push(e as AsciicastEvent);
    } catch {
      // partial line
    }
  }
  return { header, events };
}

export function readAsciicast(file: string): Asciicast {
  return parseAsciicast(fs.readFileSync(file, 'utf8'));
}

export interface PlayOptions {
  /** Playback speed factor (2 = twice as fast). */
  speed?: number;
  /** Cap on any pause between events, in seconds. */
  idleLimit?: number;
  signal?: AbortSignal;
}

/** Play the output of a recording to `out` with its original timing (scaled by speed, idle capped). */
export async function playAsciicast(cast: Asciicast, out: NodeJS.WritableStream, opts: PlayOptions = {}): Promise<void> {
  const speed = opts.speed && opts.speed > 0 ? opts.speed : 1;
  const idle = opts.idleLimit && opts.idleLimit > 0 ? opts.idleLimit : Infinity;
  let prev = 0;
  for (const [t, code, data] of cast.events) {
    if (opts.signal?.aborted) return;
    const wait = Math.min(Math.max(0, t - prev), idle) / speed;
    prev = t;
    if (wait > 0.001) await sleep(wait * 1000, undefined, { signal: opts.signal }).catch(() => {});
    if (code === 'o') {
      if (!out.write(data as string)) await new Promise((r) => out.once('drain', r));
    } else if (code === NUL_RUN_CODES.o) {
      // The bytes as they were sent (a terminal ignores NUL), in bounded slices.
      for (let left = data as number; left > 0 && !opts.signal?.aborted; left -= NUL_SLICE.length) {
        if (!out.write(left >= NUL_SLICE.length ? NUL_SLICE : NUL_SLICE.subarray(0, left))) await new Promise((r) => out.once('drain', r));
      }
    }
  }
}

const NUL_SLICE = Buffer.alloc(64 * 1024);

/** The text on the screen at the end of the recording (rendered by a headless terminal), trailing blank
 *  lines removed. Scrollback is included so nothing printed is lost. */
export async function renderFinalText(cast: Asciicast): Promise<string> {
  const term = new xterm.Terminal({ cols: cast.header.width || 80, rows: cast.header.height || 24, scrollback: 100_000, allowProposedApi: true });
  try {
    for (const [, code, data] of cast.events) {
      // NUL runs are skipped: a terminal ignores NUL.
      if (code === 'o') await new Promise<void>((r) => term.write(data as string, r));
      else if (code === 'r') {
        const m = /^(\d+)x(\d+)$/.exec(data as string);
        if (m) term.resize(Math.max(1, Number(m[1])), Math.max(1, Number(m[2])));
      }
    }
    const buf = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < buf.length; i++) lines.push((buf.getLine(i)?.translateToString(true) ?? '').trimEnd());
    while (lines.length && lines[lines.length - 1] === '') lines.pop();
    return lines.join('\n');
  } finally {
    term.dispose();
  }
}
