import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { StringDecoder } from 'node:string_decoder';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import { escapeJsonUtf8, maxEscapedLength } from '../../recorder/recordings/json-string.ts';
import { readAsciicast, renderFinalText, playAsciicast, streamText } from '../../recorder/recordings/replay.ts';
import { NUL_RUN_MIN, NUL_RUN_CODES, BINARY_CODES } from '../../recorder/recordings/index.ts';
import crypto from 'node:crypto';
import { runCli } from '../../app/main.ts';

function sink(): { stream: Writable; text: () => string; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({ write(c, _e, cb) { chunks.push(Buffer.from(c)); cb(); } }),
    text: () => Buffer.concat(chunks).toString('utf8'),
    bytes: () => Buffer.concat(chunks),
  };
}

/** Output mixing text, NUL runs just below / at / far above NUL_RUN_MIN, a character split by a run,
 *  invalid bytes next to runs, and runs at chunk edges. */
function nulHeavyOutput(): Buffer {
  const euro = Buffer.from('€');
  return Buffer.concat([
    Buffer.from('start '),
    Buffer.alloc(NUL_RUN_MIN - 1),
    Buffer.from('a'),
    Buffer.alloc(NUL_RUN_MIN),
    Buffer.from('b 5'),
    euro.subarray(0, 2), // a character cut short by a run: U+FFFD, then the run
    Buffer.alloc(100_000),
    euro,
    Buffer.from([0xff, 0xfe]),
    Buffer.alloc(70_000),
    Buffer.from([0xc3]),
    Buffer.from('\r\nend\0'),
    Buffer.alloc(3 * 32 * 1024),
  ]);
}

async function recordSample(dataDir: string, sessionId: string, opts: { input?: boolean } = {}) {
  const store = openRecordingStore(path.join(dataDir, 'recordings'));
  const w = store.openAsciicast(sessionId, 0, { width: 80, height: 24, timestamp: 1_764_000_000, term: 'xterm-256color', title: 'alice@web1', command: '/bin/bash' });
  const euro = Buffer.from('price: 5€\r\n');
  const cut = euro.indexOf(0xe2) + 1; // split inside the 3-byte euro sign
  w.output(Buffer.from('$ echo hello\r\n'));
  if (opts.input) w.input('echo hello\r');
  w.output(euro.subarray(0, cut));
  await new Promise((r) => setTimeout(r, 30));
  w.output(euro.subarray(cut));
  w.resize(100, 30);
  w.output('hello from vigil\r\n$ ');
  await w.close();
  return { store, id: w.id, file: store.pathOf(w.id) };
}

describe('asciicast recordings', () => {
  it('writes asciicast v2: header, output, resize; multibyte characters split across chunks stay whole', async () => {
    const data = tempDir();
    const { id, file, store } = await recordSample(data, 'sess1');
    expect(id).toBe('sess1/ch0.cast');
    expect(await store.list('sess1')).toEqual(['sess1/ch0.cast']);
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]);
    expect(header).toMatchObject({ version: 2, width: 80, height: 24, timestamp: 1_764_000_000, env: { TERM: 'xterm-256color' }, title: 'alice@web1', command: '/bin/bash' });
    const events = lines.slice(1).map((l) => JSON.parse(l));
    const output = events.filter((e) => e[1] === 'o').map((e) => e[2]).join('');
    expect(output).toBe('$ echo hello\r\nprice: 5€\r\nhello from vigil\r\n$ ');
    expect(output).not.toContain('\ufffd');
    expect(events.find((e) => e[1] === 'r')[2]).toBe('100x30');
    expect(events.some((e) => e[1] === 'i')).toBe(false); // keystrokes only when recorded explicitly
    const times = events.map((e) => e[0]);
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('records input events only when the caller records keystrokes', async () => {
    const data = tempDir();
    const { file } = await recordSample(data, 'sess2', { input: true });
    const cast = readAsciicast(file);
    expect(cast.events.filter((e) => e[1] === 'i').map((e) => e[2])).toEqual(['echo hello\r']);
  });

  it('never blocks or throws on write failure, and reports it once through onError', async () => {
    const base = tempDir();
    fs.writeFileSync(path.join(base, 'recordings'), 'not a directory');
    const store = openRecordingStore(path.join(base, 'recordings'));
    const w = store.openAsciicast('sess3', 1, { width: 80, height: 24, timestamp: 0 });
    const errors: Error[] = [];
    w.onError((e) => errors.push(e));
    for (let i = 0; i < 100; i++) w.output(Buffer.from(`line ${i}\r\n`));
    await w.close();
    w.output('after close');
    expect(errors).toHaveLength(1);
    expect((errors[0] as NodeJS.ErrnoException).code).toMatch(/ENOTDIR|EEXIST/);
    // A late subscriber still learns about the failure (once).
    const late: Error[] = [];
    w.onError((e) => late.push(e));
    expect(late).toHaveLength(1);
  });

  it('bounds the backlog: a recording that falls far behind reports an error instead of buffering forever', async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'), { maxQueuedBytes: 1000 });
    const w = store.openAsciicast('sess4', 0, { width: 80, height: 24, timestamp: 0 });
    const errors: Error[] = [];
    w.onError((e) => errors.push(e));
    w.output('x'.repeat(2000)); // synchronously, before the background writer could run
    expect(errors.map((e) => e.message)).toEqual([expect.stringContaining('fell more than 1000 bytes behind')]);
    await w.close();
  });

  it('plays in stock asciinema play (in a pty)', async () => {
    const data = tempDir();
    const { file } = await recordSample(data, 'sess5');
    const r = spawnSync('script', ['-qec', `asciinema play -s 100 ${file}`, '/dev/null'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TERM: 'xterm' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('hello from vigil');
    expect(r.stdout).toContain('price: 5€');
  });

  it('renders the final screen, plays with timing, and vigil replay --print shows the text', async () => {
    const data = tempDir();
    const { file } = await recordSample(data, 'sess6');
    const cast = readAsciicast(file);
    expect(await renderFinalText(cast)).toBe('$ echo hello\nprice: 5€\nhello from vigil\n$');
    const played = sink();
    await playAsciicast(cast, played.stream, { speed: 100 });
    expect(played.text()).toBe('$ echo hello\r\nprice: 5€\r\nhello from vigil\r\n$ ');

    const out = sink();
    const err = sink();
    const code = await runCli(['replay', 'sess6', '--print', '--data', data], out.stream, err.stream);
    expect(err.text()).toBe('vigil: sess6/ch0.cast: not verified: no recording.stored event and no recording.closed (still being written, or the gateway stopped before closing it)\n');
    expect(code).toBe(0);
    expect(out.text()).toContain('hello from vigil');
    const ch = await runCli(['replay', 'sess6', '--print', '--channel', '0', '--data', data], sink().stream, err.stream);
    expect(ch).toBe(0);
    const noCh = await runCli(['replay', 'sess6', '--channel', '3', '--data', data], sink().stream, sink().stream);
    expect(noCh).toBe(1);
    const missing = await runCli(['replay', 'nope', '--data', data], sink().stream, err.stream);
    expect(missing).toBe(1);
    expect(err.text()).toContain('no recording for session nope');
  });

  it('reports its backlog and calls onDrained once everything accepted is written (low-water mark 0)', async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'), { drainedBelowBytes: 0 });
    const w = store.openAsciicast('sess8', 0, { width: 80, height: 24, timestamp: 0 });
    w.output('a'.repeat(5000));
    expect(w.queuedBytes).toBe(5000);
    const drained = new Promise<number>((resolve) => w.onDrained(() => resolve(w.queuedBytes)));
    expect(await drained).toBe(0);
    expect(fs.readFileSync(store.pathOf(w.id), 'utf8')).toContain('a'.repeat(5000));
    await w.close();
  });

  it('backpressure: the queue counts raw bytes, onDrained waits for the low-water mark, the 64 MiB-style cap still fails', async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'), { drainedBelowBytes: 256 * 1024, writeBatchBytes: 64 * 1024 });
    const w = store.openAsciicast('sess9', 0, { width: 80, height: 24, timestamp: 0 });
    const chunk = Buffer.alloc(32 * 1024, 0x01); // control bytes: 6 bytes each in the file, 1 byte each in the queue
    for (let i = 0; i < 64; i++) w.output(chunk);
    expect(w.queuedBytes).toBe(64 * chunk.length);
    let firedAt: number | undefined;
    const drained = new Promise<void>((resolve) =>
      w.onDrained(() => {
        firedAt = w.queuedBytes;
        resolve();
      }),
    );
    await new Promise((r) => setImmediate(r));
    expect(firedAt).toBeUndefined(); // 2 MiB queued: far above the low-water mark
    await drained;
    expect(firedAt).toBeLessThanOrEqual(256 * 1024);
    // Called once it fell below the mark, not only when empty or at close: a paused session overlaps the rest.
    expect(firedAt).toBeGreaterThan(0);
    await w.close();
    expect(w.queuedBytes).toBe(0);
    const lines = fs.readFileSync(store.pathOf(w.id), 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as [number, string, string]);
    expect(lines.map((l) => l[2]).join('')).toBe('\x01'.repeat(64 * chunk.length));

    // A caller that ignores backpressure still hits the hard cap: reported once, queue released.
    const capped = openRecordingStore(path.join(tempDir(), 'recordings'), { maxQueuedBytes: 1024 * 1024 });
    const c = capped.openAsciicast('sess10', 0, { width: 80, height: 24, timestamp: 0 });
    const errors: Error[] = [];
    c.onError((e) => errors.push(e));
    for (let i = 0; i < 40; i++) c.output(chunk);
    expect(errors).toHaveLength(1);
    expect(errors[0].message).toMatch(/fell more than 1048576 bytes behind/);
    expect(c.queuedBytes).toBe(0);
    await new Promise<void>((resolve) => c.onDrained(resolve));
    await c.close();
  });

  it('the byte escaper writes exactly what JSON.stringify of the decoded text encodes to', () => {
    const samples = [
      Buffer.from(Array.from({ length: 128 }, (_, i) => i)),
      Buffer.alloc(100),
      // Runs of one escaped byte (filled natively from 16 on): just below, at and above, and at the end.
      Buffer.concat([Buffer.alloc(15, 0x0a), Buffer.from('x'), Buffer.alloc(16, 0x22), Buffer.alloc(17, 0x01), Buffer.from('y'), Buffer.alloc(40, 0x5c)]),
      Buffer.from('tab\tquote" back\\slash\u2028 5€ 🙂 \x1b[31mred\x7f'),
    ];
    for (const src of samples) {
      const out = Buffer.alloc(maxEscapedLength(src.length));
      const n = escapeJsonUtf8(src, out, 0);
      expect(out.subarray(0, n).toString('utf8')).toBe(JSON.stringify(src.toString('utf8')).slice(1, -1));
    }
  });

  it('output of any bytes, in any chunking, is recorded as JSON.stringify of the decoded text', async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'));
    const w = store.openAsciicast('sess11', 0, { width: 80, height: 24, timestamp: 0 });
    const all = Buffer.concat([
      Buffer.from(Array.from({ length: 256 }, (_, i) => i)), // control bytes, and invalid UTF-8 above 0x7f
      Buffer.from('ok 🙂 5€ "q" \\ \r\n'),
      Buffer.alloc(1000),
      Buffer.from([0xf0, 0x9f, 0x99, 0x82, 0xe2, 0x82, 0xac, 0xc3]), // ends inside a character
    ]);
    const expected = new StringDecoder('utf8');
    let text = '';
    // Chunk sizes 1..7 so that multibyte characters are split at every position.
    for (let at = 0, size = 1; at < all.length; at += size, size = (size % 7) + 1) {
      const chunk = all.subarray(at, at + size);
      w.output(Buffer.from(chunk));
      text += expected.write(chunk);
    }
    w.output('and a string\u0000');
    text += 'and a string\u0000' + expected.end(); // the split character is flushed (as U+FFFD) at close
    await w.close();
    const lines = fs.readFileSync(store.pathOf(w.id), 'utf8').trim().split('\n').slice(1);
    const events = lines.map((l) => JSON.parse(l) as [number, string, string]);
    // Each line is byte for byte the JSON encoding of what it holds.
    for (let i = 0; i < lines.length; i++) expect(lines[i]).toBe(`[${events[i][0].toFixed(6)}, "o", ${JSON.stringify(events[i][2])}]`);
    expect(events.map((e) => e[2]).join('')).toBe(text);
  });

  it('runs of NUL bytes become count events; text plus runs is exactly the decoded output, in any chunking', async () => {
    const all = nulHeavyOutput();
    for (const chunkSize of [32 * 1024, 5000, 7, 1]) {
      const store = openRecordingStore(path.join(tempDir(), 'recordings'));
      const w = store.openAsciicast(`nul${chunkSize}`, 0, { width: 80, height: 24, timestamp: 0 });
      const expected = new StringDecoder('utf8');
      let text = '';
      for (let at = 0; at < all.length; at += chunkSize) {
        const chunk = all.subarray(at, at + chunkSize);
        w.output(Buffer.from(chunk));
        text += expected.write(chunk);
      }
      text += expected.end();
      await w.close();
      const file = store.pathOf(w.id);
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n').slice(1);
      const events = lines.map((l) => JSON.parse(l) as [number, string, string | number]);
      expect(new Set(events.map((e) => e[1]))).toEqual(chunkSize >= NUL_RUN_MIN ? new Set(['o', NUL_RUN_CODES.o]) : new Set(['o']));
      for (const [, code, data] of events) {
        if (code === NUL_RUN_CODES.o) expect(data).toBeGreaterThanOrEqual(NUL_RUN_MIN);
      }
      expect(streamText(readAsciicast(file), 'o')).toBe(text);
      if (chunkSize === 32 * 1024) expect(fs.statSync(file).size).toBeLessThan(4096); // not 6 bytes per NUL
    }
  });

  it('recorded input gets NUL-run events of its own', async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'));
    const w = store.openAsciicast('nul-in', 0, { width: 80, height: 24, timestamp: 0 });
    w.input(Buffer.concat([Buffer.from('put '), Buffer.alloc(1000), Buffer.from('\r')]));
    w.output(Buffer.from('ok\r\n'));
    // NUL runs count in the backlog as the raw bytes they stand for (backpressure and the cap see them).
    expect(w.queuedBytes).toBe(4 + 1000 + 1 + 4);
    await w.close();
    const cast = readAsciicast(store.pathOf(w.id));
    expect(cast.events.map((e) => e[1])).toEqual(['i', NUL_RUN_CODES.i, 'i', 'o']);
    expect(streamText(cast, 'i')).toBe(`put ${'\0'.repeat(1000)}\r`);
    expect(streamText(cast, 'o')).toBe('ok\r\n');
  });

  it('a recording with NUL runs plays in stock asciinema play, renders the same screen, and replays the exact bytes', async () => {
    const data = tempDir();
    const store = openRecordingStore(path.join(data, 'recordings'));
    const w = store.openAsciicast('nulplay', 0, { width: 80, height: 24, timestamp: 0 });
    const bytes = Buffer.concat([Buffer.from('before zeros\r\n'), Buffer.alloc(50_000), Buffer.from('after zeros 5€\r\n'), Buffer.alloc(NUL_RUN_MIN)]);
    w.output(bytes);
    await w.close();
    const file = store.pathOf(w.id);
    const r = spawnSync('script', ['-qec', `asciinema play -s 100 ${file}`, '/dev/null'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TERM: 'xterm' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('before zeros');
    expect(r.stdout).toContain('after zeros 5€');
    const cast = readAsciicast(file);
    expect(await renderFinalText(cast)).toBe('before zeros\nafter zeros 5€');
    const played = sink();
    await playAsciicast(cast, played.stream, { speed: 100, raw: true });
    expect(played.bytes().equals(bytes)).toBe(true);
  });

  it("binary: 'summary' keeps text as text and, from the first non-text chunk on, only size and SHA-256", async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'));
    const w = store.openAsciicast('bin', 0, { width: 80, height: 24, timestamp: 0 }, { binary: 'summary' });
    const euro = Buffer.from('a€b ');
    const text = [Buffer.from('total 5\r\n'), euro.subarray(0, 2), euro.subarray(2), Buffer.from('literal \ufffd stays text\r\n')];
    const binary = [Buffer.from([0x50, 0x4b, 0x03, 0x04, 0xff, 0x00, 0x81]), crypto.randomBytes(200_000), Buffer.from('later text is part of the binary stream')];
    for (const c of [...text, ...binary]) w.output(c);
    expect(w.queuedBytes).toBeLessThan(1000); // the binary part is hashed, never queued
    await w.close();
    const offset = Buffer.concat(text).length;
    const expected = { offset, bytes: Buffer.concat(binary).length, sha256: crypto.createHash('sha256').update(Buffer.concat(binary)).digest('hex') };
    expect(w.binarySummary('o')).toEqual(expected);
    expect(w.binarySummary('i')).toBeUndefined();
    const file = store.pathOf(w.id);
    expect(fs.statSync(file).size).toBeLessThan(1000);
    const raw = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(raw.at(-1)).toEqual([expect.any(Number), BINARY_CODES.o, expected]);
    const cast = readAsciicast(file);
    const shown = streamText(cast, 'o');
    expect(shown.startsWith('total 5\r\na€b literal \ufffd stays text\r\n')).toBe(true);
    expect(shown).toContain(`from byte ${offset} on is recorded as its size and SHA-256 only`);
    expect(shown).toContain(`${expected.bytes} bytes of non-text output, SHA-256 ${expected.sha256}`);
    const r = spawnSync('script', ['-qec', `asciinema play -s 100 ${file}`, '/dev/null'], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, TERM: 'xterm' } });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(expected.sha256);
  });

  it("binary: 'summary' tells a literal U+FFFD from invalid bytes, also when output holds both", async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'));
    const w = store.openAsciicast('fffd', 0, { width: 80, height: 24, timestamp: 0 }, { binary: 'summary' });
    const fffd = Buffer.from('\ufffd');
    // Text: a literal U+FFFD split across chunks at each of its byte boundaries.
    const text = [Buffer.concat([Buffer.from('a'), fffd.subarray(0, 1)]), Buffer.concat([fffd.subarray(1), Buffer.from('b')]),
      Buffer.concat([Buffer.from('c'), fffd.subarray(0, 2)]), Buffer.concat([fffd.subarray(2), Buffer.from('d\r\n')])];
    // Not text: random output that happens to contain EF BF BD next to bytes that are not UTF-8.
    const binary = [Buffer.concat([Buffer.from('x'), fffd, Buffer.from([0xff, 0xc3]), fffd])];
    for (const c of [...text, ...binary]) w.output(c);
    await w.close();
    const offset = Buffer.concat(text).length;
    expect(w.binarySummary('o')).toEqual({ offset, bytes: binary[0]!.length, sha256: crypto.createHash('sha256').update(binary[0]!).digest('hex') });
    expect(streamText(readAsciicast(store.pathOf(w.id)), 'o').startsWith('a\ufffdbc\ufffdd\r\n')).toBe(true);
  });

  it("by default (binary: 'full') non-text output is recorded like text, invalid bytes as U+FFFD", async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'));
    const w = store.openAsciicast('binfull', 0, { width: 80, height: 24, timestamp: 0 });
    w.output(Buffer.from([0x41, 0xff, 0x42]));
    await w.close();
    expect(w.binarySummary('o')).toBeUndefined();
    expect(streamText(readAsciicast(store.pathOf(w.id)), 'o')).toBe('A\ufffdB');
  });

  it('an odd session id never escapes the store', async () => {
    const dir = path.join(tempDir(), 'recordings');
    const store = openRecordingStore(dir);
    const w = store.openAsciicast('../../etc/x', 2, { width: 80, height: 24, timestamp: 0 });
    w.output('x');
    await w.close();
    expect(store.pathOf(w.id).startsWith(dir + path.sep)).toBe(true);
    expect(await store.list('../../etc/x')).toEqual([w.id]);
    expect(() => store.pathOf('../outside')).toThrow();
  });

  it('the final screen reflects cursor movement (what was overwritten is gone)', async () => {
    const store = openRecordingStore(path.join(tempDir(), 'recordings'));
    const w = store.openAsciicast('sess7', 0, { width: 40, height: 5, timestamp: 0 });
    w.output('secret-ish progress 10%\r\x1b[2Kdone\r\n');
    await w.close();
    expect(await renderFinalText(readAsciicast(store.pathOf(w.id)))).toBe('done');
  });
});
