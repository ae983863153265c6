import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';

/** A fresh temp dir, removed by the returned cleanup. */
export function tempDir(prefix = 'vigil-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A free loopback TCP port (bind 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Poll `fn` until it returns a truthy value or `ms` passes. */
export async function waitFor<T>(fn: () => T | Promise<T>, ms = 10_000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A `secrets/` dir (0700) under `base` and a writer of 0600 secret files in it, for backend passwords. */
export function secretsDir(base: string): (name: string, value: string) => string {
  const dir = path.join(base, 'secrets');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return (name, value) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, value, { mode: 0o600 });
    return p;
  };
}
