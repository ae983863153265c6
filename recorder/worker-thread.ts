/**
 * Source of a worker thread that runs one of this package's modules, compiled or not: `new Worker(src,
 * { eval: true })`. Compiled (dist/), the worker imports the compiled module as is; run from sources, it
 * registers tsx first (in a worker thread the parent's loader does not apply).
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/** `fromUrl`: the calling module's import.meta.url; `module`: the worker's module beside it, without extension. */
export function workerSource(fromUrl: string, module: string): string {
  if (fromUrl.endsWith('.js')) return `import(${JSON.stringify(new URL(`${module}.js`, fromUrl).href)});`;
  const main = new URL(`${module}.ts`, fromUrl).href;
  // tsx's ESM API sits beside its CommonJS entry; the package's exports map names only the latter here.
  const tsx = pathToFileURL(createRequire(fromUrl).resolve('tsx/esm/api').replace(/index\.cjs$/, 'index.mjs')).href;
  return `(async () => {
    const { register } = await import(${JSON.stringify(tsx)});
    register();
    await import(${JSON.stringify(main)});
  })().catch((e) => { process.nextTick(() => { throw e; }); });`;
}

/** What a one-shot worker posts back: its value, or why it failed. */
export type WorkerReply<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Run one job in a new worker thread (`module` beside `fromUrl`, given `data` as workerData) and settle
 * once with the value it posts back (a WorkerReply). `signal` ends it (gateway shutdown) and the promise
 * rejects; so do an error, an `{ok: false}` reply and an exit without a reply. `what` names the job in
 * those messages.
 */
export function runInWorker<T>(fromUrl: string, module: string, data: unknown, what: string, signal?: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(workerSource(fromUrl, module), { eval: true, workerData: data });
    let settled = false;
    const settle = (f: () => void) => {
      if (settled) return;
      settled = true;
      f();
    };
    const abort = () => {
      settle(() => reject(new Error(`${what} stopped: the gateway is shutting down`)));
      void worker.terminate();
    };
    if (signal?.aborted) abort();
    signal?.addEventListener('abort', abort, { once: true });
    worker.once('message', (m: WorkerReply<T>) => settle(() => (m.ok ? resolve(m.value) : reject(new Error(`${what} failed: ${m.error}`)))));
    worker.once('error', (e) => settle(() => reject(e)));
    worker.once('exit', (code) => {
      signal?.removeEventListener('abort', abort);
      settle(() => reject(new Error(`${what} worker exited with code ${code}`)));
    });
  });
}
