import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AppendReceipt, AuditSink } from '../types.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { AuditUnavailableError } from '../../src/errors.ts';
import { fsyncDir, writeFileAtomic } from './durable.ts';

/**
 * The spool lets CLI processes add events to the chain while a gateway holds the writer lock. A client
 * writes each event as one fsync'd file `<event id>-<pid>-<n>.evt` (tmp + rename, so the writer never sees
 * a partial file); the writer claims it (rename to `.claimed`), appends it, and once the record is durable
 * writes `<base>.ack` with the receipt (or `.nack` with the reason) and removes the claimed file.
 */
export const SPOOL_DIR = 'spool';
const EVT = '.evt';
const CLAIMED = '.claimed';

export interface SpoolIngest {
  drain(): Promise<void>;
  stop(): Promise<void>;
}

/** Writer side: poll the spool and append what CLI processes left there, in name (= event id) order. */
export function startSpoolIngest(
  sink: AuditSink,
  spoolDir: string,
  pollMs: number,
  /** The receipt of an event already in the chain (asked only for claimed files a killed writer left). */
  recorded: (event: AuditEvent) => AppendReceipt | undefined,
  log: Logger,
  onIngested: (event: AuditEvent) => void = () => {},
  watch = true,
): SpoolIngest {
  let running: Promise<void> | undefined;
  let stopped = false;
  let firstPass = true;

  async function ingestOnce(): Promise<void> {
    let names: string[];
    try {
      names = await fsp.readdir(spoolDir);
    } catch {
      return;
    }
    // Claimed files left by a writer that crashed are taken again at open, unless the chain has them.
    const ours = names.filter((n) => !n.startsWith('.') && (n.endsWith(EVT) || (firstPass && n.endsWith(CLAIMED)))).sort();
    if (firstPass) {
      // Temp files of clients that died mid-write, and answers nobody collected, are garbage after a while.
      const old = Date.now() - 10 * 60_000;
      for (const n of names) {
        if (!n.endsWith('.partial') && !n.endsWith('.ack') && !n.endsWith('.nack')) continue;
        const p = path.join(spoolDir, n);
        const st = await fsp.stat(p).catch(() => undefined);
        if (st && st.mtimeMs < old) await fsp.rm(p, { force: true });
      }
    }
    firstPass = false;
    const work: Promise<void>[] = [];
    for (const name of ours) {
      const base = name.slice(0, name.lastIndexOf('.'));
      const claimed = path.join(spoolDir, base + CLAIMED);
      if (name.endsWith(EVT)) {
        try {
          await fsp.rename(path.join(spoolDir, name), claimed);
        } catch {
          continue; // withdrawn by its client after a timeout
        }
      }
      let event: AuditEvent;
      try {
        event = JSON.parse(await fsp.readFile(claimed, 'utf8')) as AuditEvent;
        if (!event || typeof event !== 'object' || typeof event.type !== 'string') throw new Error('not an audit event');
      } catch (e) {
        work.push(answer(base, claimed, { error: `spooled event rejected: ${(e as Error).message}` }));
        continue;
      }
      // A writer killed after the record was durable but before it answered: the record stands, once.
      // Its client may still be waiting (a claimed event gets a second timeout), and hears the receipt.
      const already = name.endsWith(CLAIMED) ? recorded(event) : undefined;
      if (already) {
        work.push(answer(base, claimed, already));
        continue;
      }
      // append() assigns the chain position synchronously, so the order of these calls is the chain order.
      const appended = sink.append(event);
      work.push(
        appended.then(
          (receipt) => {
            onIngested(event);
            return answer(base, claimed, receipt);
          },
          (e: Error) => answer(base, claimed, { error: e.message }),
        ),
      );
    }
    await Promise.all(work);
  }

  async function answer(base: string, claimed: string, body: AppendReceipt | { error: string }): Promise<void> {
    const ok = !('error' in body);
    try {
      await writeFileAtomic(path.join(spoolDir, base + (ok ? '.ack' : '.nack')), JSON.stringify(body));
      await fsp.rm(claimed, { force: true });
    } catch (e) {
      log.error({ err: e, file: claimed }, 'audit spool: could not answer a spooled event');
    }
  }

  // A kick while a pass runs (its readdir may already be done) asks for one more pass afterwards.
  let again = false;
  const drain = (): Promise<void> => {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        await ingestOnce();
      } while (again && !stopped);
    })().finally(() => (running = undefined));
    return running;
  };
  const kick = () => {
    if (!stopped && sink.healthy) void drain();
  };
  // A spooled event is noticed at once through inotify; the poll is only the safety net (a watch can
  // miss events, e.g. on some network file systems), so it need not run often.
  let watcher: fs.FSWatcher | undefined;
  if (watch) {
    try {
      watcher = fs.watch(spoolDir, (_kind, name) => {
        if (name === null || String(name).endsWith(EVT)) kick();
      });
      watcher.on('error', () => watcher?.close());
      watcher.unref();
    } catch {
      watcher = undefined;
    }
  }
  const timer = setInterval(kick, pollMs);
  timer.unref();
  return {
    drain,
    async stop() {
      stopped = true;
      clearInterval(timer);
      watcher?.close();
      await running;
    },
  };
}

/**
 * Client side: an AuditSink for a CLI process while another process holds the writer. append() resolves
 * once the writer has made the event durable in the chain, or rejects after `timeoutMs`.
 */
export function openSpoolClient(dir: string, timeoutMs = 5000): AuditSink {
  const spoolDir = path.join(dir, SPOOL_DIR);
  fs.mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
  let n = 0;
  let failure: Error | undefined;

  async function waitForAnswer(base: string, until: number): Promise<AppendReceipt | undefined> {
    const ack = path.join(spoolDir, `${base}.ack`);
    const nack = path.join(spoolDir, `${base}.nack`);
    for (;;) {
      try {
        const receipt = JSON.parse(await fsp.readFile(ack, 'utf8')) as AppendReceipt;
        await fsp.rm(ack, { force: true });
        return receipt;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      try {
        const body = JSON.parse(await fsp.readFile(nack, 'utf8')) as { error: string };
        await fsp.rm(nack, { force: true });
        throw new AuditUnavailableError(`the running audit writer refused the event: ${body.error}`);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      }
      if (Date.now() > until) return undefined;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  return {
    get healthy() {
      return !failure;
    },
    get failure() {
      return failure;
    },
    async append(event) {
      if (failure) throw failure;
      const base = `${event.id}-${process.pid}-${n++}`;
      const evt = path.join(spoolDir, base + EVT);
      try {
        await writeFileAtomic(evt, JSON.stringify(event));
        await fsyncDir(spoolDir);
        let receipt = await waitForAnswer(base, Date.now() + timeoutMs);
        if (receipt) return receipt;
        try {
          await fsp.rm(evt); // withdraw: the writer never claimed it
        } catch {
          // Claimed meanwhile: the writer is appending it; give it the same time again to answer.
          receipt = await waitForAnswer(base, Date.now() + timeoutMs);
          if (receipt) return receipt;
        }
        throw new AuditUnavailableError(
          `the audit log is held by another process (the running gateway) that did not record the event within ${Math.round(timeoutMs / 1000)} s`,
        );
      } catch (e) {
        failure = e instanceof AuditUnavailableError ? e : new AuditUnavailableError(`audit spool: ${(e as Error).message}`, { cause: e });
        throw failure;
      }
    },
    async close() {},
  };
}
