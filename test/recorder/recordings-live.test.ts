import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import type { LiveCast } from '../../recorder/types.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/** Follow a live recording, collecting what arrives and whether it ended. */
function collect(cast: LiveCast, fromStart: boolean) {
  const got: Buffer[] = [];
  let ended = false;
  const stop = cast.follow(fromStart, (b) => got.push(b), () => (ended = true));
  return { text: () => Buffer.concat(got).toString('utf8'), ended: () => ended, stop };
}

const header = { width: 80, height: 24, timestamp: 1_700_000_000 };

describe('live recordings (watch)', () => {
  it('a follower from the start gets exactly the file: what was on disk, then each write, nothing twice', async () => {
    const dir = tempDir();
    const store = openRecordingStore(dir, { smallWriteDelayMs: 1 });
    const casts: LiveCast[] = [];
    const unwatch = store.watch!('S1', (c) => casts.push(c));
    const w = store.openAsciicast('S1', 0, header);
    expect(casts.map((c) => c.id)).toEqual([w.id]);
    w.output('first line\r\n');
    await waitFor(() => fs.readFileSync(store.pathOf(w.id), 'utf8').includes('first line'), 5000, 'first write');
    const fromStart = collect(casts[0], true);
    const fromNow = collect(casts[0], false);
    for (let i = 0; i < 50; i++) w.output(`line ${i}\r\n`);
    await w.close();
    await waitFor(() => fromStart.ended() && fromNow.ended(), 5000, 'followers ended');
    const file = fs.readFileSync(store.pathOf(w.id), 'utf8');
    expect(fromStart.text()).toBe(file);
    // From now: the header, then only what was written after it started following.
    const lines = fromNow.text().trimEnd().split('\n');
    expect(JSON.parse(lines[0])).toMatchObject({ version: 2, width: 80, height: 24 });
    expect(fromNow.text()).not.toContain('first line');
    expect(fromNow.text()).toContain('line 49');
    unwatch();
  });

  it('hears of recordings opened after it started watching, and not of other sessions', async () => {
    const dir = tempDir();
    const store = openRecordingStore(dir, { smallWriteDelayMs: 1 });
    const seen: string[] = [];
    const unwatch = store.watch!('S2', (c) => seen.push(`${c.id}@${c.channel}`));
    const other = store.openAsciicast('S3', 0, header);
    const a = store.openAsciicast('S2', 1, header);
    const b = store.openAsciicast('S2', 2, header);
    expect(seen).toEqual([`${a.id}@1`, `${b.id}@2`]);
    await Promise.all([other.close(), a.close(), b.close()]);
    // Closed recordings are no longer live: a new watcher is told of none.
    const later: string[] = [];
    store.watch!('S2', (c) => later.push(c.id))();
    expect(later).toEqual([]);
    unwatch();
    expect(fs.existsSync(path.join(dir, 'S2', 'ch2.cast'))).toBe(true);
  });
});
