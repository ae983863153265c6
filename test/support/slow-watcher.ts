import fs from 'node:fs';
import { WebSocket } from 'ws';
import type { IssuedFiles } from './gateway.ts';
import { waitFor } from './tmp.ts';

/** The tail of a file (its last `n` bytes), without reading the rest. */
export function fileTail(file: string, n: number): string {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.min(n, size));
    fs.readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** A session watch socket (`/v1/sessions/:id/watch`) opened with an auditor's certificate. */
export function watchSocket(apiPort: number, sessionId: string, who: IssuedFiles): WebSocket {
  const ws = new WebSocket(`wss://127.0.0.1:${apiPort}/v1/sessions/${sessionId}/watch`, {
    cert: fs.readFileSync(who.crt),
    key: fs.readFileSync(who.key),
    ca: fs.readFileSync(who.ca),
  });
  ws.on('error', () => {});
  return ws;
}

export interface SlowWatch {
  /** Set when the gateway closed the watch before the end marker arrived. */
  closed?: { code: number; reason: string };
  largestMessage: number;
  /** Bytes of terminal output received, and cast events of any kind. */
  outputBytes: number;
  events: number;
  header?: Record<string, unknown>;
}

/**
 * Watch a session from its start as a slow reader: it pauses 300 ms after every 32 messages, so the
 * gateway has to wait for it. Each message is looked at and dropped (the test holds no copy of the
 * recording). Resolves once the output carries `endMark`, or the gateway closed the watch.
 */
export async function watchSlowly(apiPort: number, sessionId: string, who: IssuedFiles, endMark: string, timeoutMs: number): Promise<SlowWatch> {
  const result: SlowWatch = { largestMessage: 0, outputBytes: 0, events: 0 };
  let sawEnd = false;
  let closed: SlowWatch['closed'];
  const ws = watchSocket(apiPort, sessionId, who);
  ws.on('close', (code, reason) => (closed = { code, reason: reason.toString() }));
  let received = 0;
  ws.on('message', (d: Buffer) => {
    result.largestMessage = Math.max(result.largestMessage, d.length);
    const m = JSON.parse(d.toString('utf8'));
    if (m.type !== 'cast') return;
    if (m.header) result.header = m.header;
    for (const e of m.events) {
      result.events++;
      if (e[1] !== 'o') continue;
      result.outputBytes += Buffer.byteLength(e[2]);
      if (e[2].includes(endMark)) sawEnd = true;
    }
    if (++received % 32 === 0) {
      ws.pause();
      setTimeout(() => ws.resume(), 300);
    }
  });
  try {
    await waitFor(() => sawEnd || closed !== undefined, timeoutMs, 'the whole recording at the watcher');
  } finally {
    // Taken before this side's own close below: only a close by the gateway counts.
    if (closed) result.closed = closed;
    ws.close();
  }
  return result;
}
