// Build the web console into OUT (default dist/console): Vite bundles console/ (Preact, asciinema-player
// and its CSS/WebAssembly vendored from node_modules), then every file gets .gz and .br siblings for the
// server to send precompressed, and build.json records a hash of the sources (ensureConsoleBuilt compares
// it to rebuild only when they changed). The build goes to a temporary directory renamed into place, so a
// server or a parallel test never sees half a build.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const DEFAULT_OUT = path.resolve(here, '../dist/console');

/** Hash of everything the bundle is made from: the console sources and the versions of its packages. */
export function sourceHash() {
  const h = crypto.createHash('sha256');
  const walk = (dir) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      if (fs.statSync(p).isDirectory()) walk(p);
      else h.update(path.relative(here, p)).update('\0').update(fs.readFileSync(p)).update('\0');
    }
  };
  walk(path.join(here, 'src'));
  for (const f of ['index.html', 'vite.config.ts', 'build.mjs']) h.update(f).update(fs.readFileSync(path.join(here, f)));
  for (const pkg of ['preact', 'asciinema-player', 'vite']) {
    h.update(pkg).update(fs.readFileSync(path.join(here, '../node_modules', pkg, 'package.json')));
  }
  return h.digest('hex');
}

export async function buildConsole(out = DEFAULT_OUT) {
  const { build } = await import('vite');
  const tmp = `${out}.tmp-${process.pid}-${Date.now()}`;
  await build({ configFile: path.join(here, 'vite.config.ts'), build: { outDir: tmp, emptyOutDir: true } });
  const files = [];
  const walk = (dir) => {
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      if (fs.statSync(p).isDirectory()) walk(p);
      else files.push(p);
    }
  };
  walk(tmp);
  for (const f of files) {
    const data = fs.readFileSync(f);
    fs.writeFileSync(`${f}.gz`, zlib.gzipSync(data, { level: 9 }));
    fs.writeFileSync(`${f}.br`, zlib.brotliCompressSync(data, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length } }));
  }
  const manifest = { source_hash: sourceHash(), built_at: new Date().toISOString(), files: files.map((f) => path.relative(tmp, f).split(path.sep).join('/')).sort() };
  fs.writeFileSync(path.join(tmp, 'build.json'), JSON.stringify(manifest, null, 2) + '\n');
  // Swap in: the old build (if any) is moved aside first, then removed.
  const old = `${out}.old-${process.pid}-${Date.now()}`;
  if (fs.existsSync(out)) fs.renameSync(out, old);
  fs.renameSync(tmp, out);
  fs.rmSync(old, { recursive: true, force: true });
  return manifest;
}

/** Build unless OUT already holds a build of the current sources. */
export async function ensureConsoleBuilt(out = DEFAULT_OUT) {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(out, 'build.json'), 'utf8'));
    if (m.source_hash === sourceHash()) return m;
  } catch {
    // not built yet
  }
  return buildConsole(out);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const out = process.argv[2] ? path.resolve(process.argv[2]) : DEFAULT_OUT;
  const m = await buildConsole(out);
  process.stdout.write(`built console: ${m.files.length} files in ${path.relative(process.cwd(), out) || '.'}\n`);
}
