import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import { fileURLToPath } from 'node:url';

/**
 * The console's built files (console/ bundled by Vite, see console/build.mjs): hashed assets served
 * precompressed with a year-long immutable cache, index.html revalidated every time so a new build is
 * picked up at once. Every response carries a Content-Security-Policy without inline scripts.
 */
export const BUILD_MARKER = 'build.json';

/**
 * `script-src 'self' 'wasm-unsafe-eval'`: the vendored terminal player runs its VT parser as WebAssembly,
 * which browsers gate behind that keyword; it allows compiling wasm, never evaluating JavaScript.
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  // The access-review report page frames the report (served with its own sandboxing CSP).
  "frame-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

export function securityHeaders(): Record<string, string> {
  return {
    'content-security-policy': CONSOLE_CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    'strict-transport-security': 'max-age=31536000',
    'cross-origin-opener-policy': 'same-origin',
  };
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.woff2': 'font/woff2',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

/**
 * Where the build is: `VIGIL_CONSOLE_DIR`, else next to the compiled code (dist/console when running
 * dist/src/...), else dist/console of the source tree (running from source, as the tests do).
 */
export function consoleDir(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [process.env.VIGIL_CONSOLE_DIR, path.resolve(here, '../../console'), path.resolve(here, '../../dist/console')];
  for (const c of candidates) if (c && fs.existsSync(path.join(c, BUILD_MARKER))) return c;
  return undefined;
}

export function serveStatic(dir: string | undefined, pathname: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const headers = securityHeaders();
  if (!dir) {
    res.writeHead(503, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('The web console is not built: run `npm run build`.\n');
    return;
  }
  const rel = pathname.replace(/^\/console\/?/, '');
  const asset = rel.startsWith('assets/') && !rel.includes('..') && /^[A-Za-z0-9._/-]+$/.test(rel);
  const file = asset ? path.join(dir, rel) : path.join(dir, 'index.html');
  // Regular files only: `/console/assets/` names the directory, whose read fails with EISDIR after the
  // headers are out (an unhandled stream error that took the whole gateway down, before any sign-in).
  if (asset && !isFile(file)) {
    res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end('Not found.\n');
    return;
  }
  const accept = String(req.headers['accept-encoding'] ?? '');
  let served = file;
  let encoding: string | undefined;
  if (/\bbr\b/.test(accept) && fs.existsSync(file + '.br')) (served = file + '.br'), (encoding = 'br');
  else if (/\bgzip\b/.test(accept) && fs.existsSync(file + '.gz')) (served = file + '.gz'), (encoding = 'gzip');
  const size = fs.statSync(served).size;
  res.writeHead(200, {
    ...headers,
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': String(size),
    // Hashed names never change content; index.html names the current ones.
    'cache-control': asset ? 'public, max-age=31536000, immutable' : 'no-cache',
    vary: 'accept-encoding',
    ...(encoding ? { 'content-encoding': encoding } : {}),
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  // A read that fails midway (file replaced by a new build) ends this response, never the process.
  const stream = fs.createReadStream(served);
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}
