/**
 * Inside the index follower's worker thread (index-follower.ts): catch-ups on request, in slices of
 * `batch` records, each slice's indexed seq posted back. The index (SQLite, the statement text
 * tokenized for full-text search) costs ~15-20 µs of CPU per record: here it never holds the event loop
 * that relays sessions.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AuditIndex } from './search-index.ts';
import type { FollowerReply, FollowerRequest, FollowerWorkerData } from './index-follower.ts';

const { auditDir, batch, paused } = workerData as FollowerWorkerData;
const pausedFlag = new Int32Array(paused);
const port = parentPort!;
const post = (m: FollowerReply) => port.postMessage(m);
let index: AuditIndex | undefined;
let stopping = false;

async function catchUp(): Promise<void> {
  try {
    index ??= AuditIndex.open(auditDir);
    for (;;) {
      const res = index.catchUp({ maxRecords: batch });
      post({ kind: 'progress', indexedSeq: index.indexedSeq() });
      if (res.done || stopping || Atomics.load(pausedFlag, 0) === 1) break;
      // Between slices: a stop request is read here.
      await new Promise<void>((r) => setImmediate(r));
    }
    post({ kind: 'done' });
  } catch (e) {
    index?.close();
    index = undefined;
    post({ kind: 'done', error: (e as Error).message });
  }
}

let running: Promise<void> | undefined;
port.on('message', (m: FollowerRequest) => {
  if (m.kind === 'catch-up') {
    if (!running && !stopping) running = catchUp().finally(() => (running = undefined));
    return;
  }
  stopping = true;
  void (running ?? Promise.resolve()).then(() => {
    index?.close();
    index = undefined;
    port.close();
  });
});
