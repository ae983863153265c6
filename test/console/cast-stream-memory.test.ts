import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CastStream, dataOf, MAX_LINE_CHARS } from '../../console/src/cast-stream.ts';
import { streamingCast } from '../../console/src/cast-driver.ts';

/**
 * The console's replay holds a bounded window of a recording, whatever its size: a 200 MB cast (generated
 * as it is served, never held by the test) is read through to the end by the real CastStream, and the
 * real driver seeks to its middle and back to its start, with the heap staying far below the recording.
 */

const EVENTS = 200_000;
const HEADER = JSON.stringify({ version: 2, width: 80, height: 24 }) + '\n';
const PAD = 'x'.repeat(1000);
/**
 * Event i at i*10 ms (plus `gap` seconds from the middle on); every line the same length, so any byte range
 * can be generated.
 */
const lineOf = (i: number, gap = 0) => `[${(i / 100 + (i >= EVENTS / 2 ? gap : 0)).toFixed(2).padStart(10)}, "o", "${label(i)} ${PAD}"]\n`;
/** The idle pause in the middle of /idle.cast (s). */
const IDLE_GAP = 100;
const label = (i: number) => `ev-${String(i).padStart(7, '0')}`;
const LINE = lineOf(0).length;
const SIZE = HEADER.length + EVENTS * LINE;
const MiB = 1024 * 1024;
/** Far under the recording's 200 MB: the window (8 Mi characters) plus what a read has in flight. */
const HEAP_BOUND = 64 * MiB;

const gc: () => void =
  (globalThis as { gc?: () => void }).gc ??
  (() => {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  })();
const heapAfterGc = () => (gc(), gc(), process.memoryUsage().heapUsed);

/** Bytes [start, end] of the generated recording, streamed with back-pressure. */
function serveRange(res: http.ServerResponse, start: number, end: number, gap: number) {
  let pos = start;
  const pump = () => {
    while (pos <= end) {
      let chunk: string;
      if (pos < HEADER.length) chunk = HEADER.slice(pos);
      else {
        const i = Math.floor((pos - HEADER.length) / LINE);
        let text = '';
        for (let j = i; j < Math.min(EVENTS, i + 64); j++) text += lineOf(j, gap);
        chunk = text.slice(pos - HEADER.length - i * LINE);
      }
      chunk = chunk.slice(0, end - pos + 1);
      pos += chunk.length;
      if (!res.write(chunk)) return void res.once('drain', pump);
    }
    res.end();
  };
  pump();
}

let server: http.Server;
let url: string;
let longLineUrl: string;
let idleUrl: string;
/** The heap before any recording is read: each test's growth is measured from here. */
let baseline: number;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    if (req.url === '/long-line.cast') {
      // A header, then a line that never ends.
      res.writeHead(200, { 'content-type': 'application/x-asciicast' });
      res.write(HEADER + '[0.5, "o", "');
      let left = MAX_LINE_CHARS + MiB;
      const pump = () => {
        while (left > 0) {
          left -= 64 * 1024;
          if (!res.write('y'.repeat(64 * 1024))) return void res.once('drain', pump);
        }
        res.end();
      };
      return pump();
    }
    const gap = req.url === '/idle.cast' ? IDLE_GAP : 0;
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (!m) {
      res.writeHead(200, { 'content-type': 'application/x-asciicast', 'content-length': String(SIZE) });
      return serveRange(res, 0, SIZE - 1, gap);
    }
    const start = m[1] ? Number(m[1]) : SIZE - Number(m[2]);
    const end = m[1] && m[2] ? Number(m[2]) : SIZE - 1;
    res.writeHead(206, { 'content-type': 'application/x-asciicast', 'content-range': `bytes ${start}-${end}/${SIZE}`, 'content-length': String(end - start + 1) });
    serveRange(res, start, end, gap);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  url = `http://127.0.0.1:${port}/big.cast`;
  longLineUrl = `http://127.0.0.1:${port}/long-line.cast`;
  idleUrl = `http://127.0.0.1:${port}/idle.cast`;
  baseline = heapAfterGc();
});

afterAll(() => {
  server?.closeAllConnections();
  server?.close();
});

describe('console replay memory', () => {
  it('reads a 200 MB recording through to the end holding a bounded window, every event in order', async () => {
    expect(SIZE).toBeGreaterThan(200 * 1000 * 1000);
    let peak = 0;
    const stream = new CastStream(url, {}, Infinity);
    stream.start();
    let wrong = 0;
    let i = 0;
    for (;;) {
      const e = stream.event(i);
      if (!e) {
        if (stream.done) break;
        await stream.waitUntil(() => stream.event(i) !== undefined);
        continue;
      }
      if (Math.round(e[0]) !== i * 10 || !dataOf(e).startsWith(label(i) + ' ')) wrong++;
      i++;
      // Played: the stream may drop it.
      stream.release(i);
      if (i % 20_000 === 0) peak = Math.max(peak, heapAfterGc() - baseline);
    }
    peak = Math.max(peak, heapAfterGc() - baseline);
    stream.stop();
    expect(stream.error).toBeUndefined();
    expect({ events: i, wrong, end: stream.endTime }).toEqual({ events: EVENTS, wrong: 0, end: (EVENTS - 1) * 10 });
    expect(stream.bytes).toBe(SIZE);
    expect(peak).toBeLessThan(HEAP_BOUND);
  }, 300_000);

  it('the driver seeks to the middle of a 200 MB recording and back to its start with the heap bounded', async () => {
    let peak = 0;
    /** The label of the last output applied, and whether outputs came in order since the last reset. */
    let lastSeen = -1;
    let outOfOrder = 0;
    let resets = 0;
    const dispatch = (name: string, data?: unknown) => {
      if (name === 'reset') (resets++, (lastSeen = -1));
      if (name !== 'output' || !Array.isArray(data)) return;
      for (const text of data as string[]) {
        const n = Number(/^ev-(\d{7}) /.exec(text)?.[1]);
        if (n !== lastSeen + 1) outOfOrder++;
        lastSeen = n;
        if (n % 20_000 === 0) peak = Math.max(peak, heapAfterGc() - baseline);
      }
    };
    const logger = { debug() {}, warn() {} };
    const driver = streamingCast(url)({ dispatch, logger }, {});
    try {
      await driver.init();
      // The middle: every event up to it applied, in order, read on as the window is used.
      const middle = EVENTS / 2;
      await driver.seek((middle * 10) / 1000);
      expect({ lastSeen, outOfOrder }).toEqual({ lastSeen: middle, outOfOrder: 0 });
      peak = Math.max(peak, heapAfterGc() - baseline);
      // Back to the start: the terminal is reset and the recording read again from its first event.
      const resetsBefore = resets;
      await driver.seek(0.05);
      expect(resets).toBe(resetsBefore + 1);
      expect({ lastSeen, outOfOrder }).toEqual({ lastSeen: 5, outOfOrder: 0 });
      // And forward again, past what the first seek read: 75% of the duration (from the tail's last event).
      await driver.seek('75%');
      const at75 = Math.floor((0.75 * (EVENTS - 1) * 10) / 10);
      expect({ lastSeen, outOfOrder }).toEqual({ lastSeen: at75, outOfOrder: 0 });
      expect(driver.getDuration()).toBe(((EVENTS - 1) * 10) / 1000);
      peak = Math.max(peak, heapAfterGc() - baseline);
    } finally {
      driver.stop();
    }
    expect(peak).toBeLessThan(HEAP_BOUND);
  }, 300_000);

  it('with the idle limit, the duration is the compressed one, not the last line\'s time, long before playback gets there', async () => {
    const logger = { debug() {}, warn() {} };
    const driver = streamingCast(idleUrl)({ dispatch() {}, logger }, { idleTimeLimit: 2 });
    try {
      await driver.init();
      const raw = (EVENTS - 1) / 100 + IDLE_GAP;
      // The pause in the middle (100.01 s) plays as 2 s.
      const compressed = raw - (IDLE_GAP + 0.01 - 2);
      await expect.poll(() => driver.getDuration(), { timeout: 60_000, interval: 50 }).toBeCloseTo(compressed, 3);
    } finally {
      driver.stop();
    }
  }, 120_000);

  it('a line longer than the bound is an error, not unbounded growth', async () => {
    const stream = new CastStream(longLineUrl, {}, Infinity);
    stream.start();
    await expect(stream.waitUntil(() => false)).rejects.toThrow(/line longer than 8 MiB/);
    stream.stop();
  }, 60_000);
});
