import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { TestGateway } from './gateway.ts';

/** GET /healthz from an in-process gateway (asynchronously: a blocking client would stall its event loop). */
export function healthStatus(tg: TestGateway): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port: tg.ports.api, path: '/healthz', rejectUnauthorized: false, timeout: 10_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('health check timed out')));
  });
}

/** Fill a file system to the last byte; returns the filler file (delete it to free the space). */
export function fillFileSystem(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  for (const size of [65536, 4096, 1]) {
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(size, 1));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
    }
  }
  fs.closeSync(fd);
  return file;
}
