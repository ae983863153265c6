import fs from 'node:fs';
import path from 'node:path';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import { parseAsciicast, streamText } from '../../recorder/recordings/replay.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { parseSession } from '../engine/session.ts';
import { scratchDir } from '../engine/scratch.ts';

const dir = scratchDir('cast');
const store = openRecordingStore(dir, { coalesceSeconds: 0, smallWriteDelayMs: 0 });
let n = 0;

/** Valid UTF-8 (decoding and re-encoding gives the same bytes). */
const isUtf8 = (b: Buffer): boolean => Buffer.from(b.toString('utf8'), 'utf8').equals(b);

/**
 * What a session sends to the asciicast writer: output (direction 0), recorded input (1) and resizes (2)
 * cut anywhere, including inside UTF-8 sequences and NUL runs. The file must parse as asciicast v2, and
 * when the output was valid UTF-8 text it must replay to exactly that text.
 */
export const target: FuzzTarget = {
  name: 'asciicast',
  covers: ['recorder/recordings/'],
  maxLen: 8192,
  dictionary: [Buffer.alloc(70), Buffer.from([0xe2, 0x82]), Buffer.from([0xac]), Buffer.from([0xf0, 0x9f, 0x98, 0x80]), '\x1b[31m', '\ufffd', '"', '\\', '\u2028', Buffer.from([0xff, 0xfe])],
  async run(data) {
    const w = store.openAsciicast(`s${n++ % 4}`, 0, { width: 80, height: 24, timestamp: 1700000000, term: 'xterm' }, { binary: (data[0] ?? 0) & 0x80 ? 'summary' : 'full' });
    let failed: Error | undefined;
    w.onError((e) => (failed = e));
    const outs: Buffer[] = [];
    for (const c of parseSession(data)) {
      if (c.dir % 3 === 0) {
        w.output(c.bytes);
        outs.push(c.bytes);
      } else if (c.dir % 3 === 1) w.input(c.bytes);
      else w.resize((c.bytes[0] ?? 0) + 1, (c.bytes[1] ?? 0) + 1);
    }
    await w.close();
    check(!failed, `recording failed: ${failed?.message}`);
    const text = fs.readFileSync(store.pathOf(w.id), 'utf8');
    const cast = parseAsciicast(text);
    check(cast.header.width === 80, 'header lost');
    for (const line of text.split('\n').slice(1)) if (line) JSON.parse(line); // every event line is JSON
    const out = Buffer.concat(outs);
    if (isUtf8(out) && !w.binarySummary('o')) check(streamText(cast, 'o') === out.toString('utf8'), 'replayed output differs from the text recorded');
    fs.rmSync(path.dirname(store.pathOf(w.id)), { recursive: true, force: true });
  },
};
