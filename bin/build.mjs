#!/usr/bin/env node
// `npm run build [-- --out DIR] [-- --no-check]`: compiles app/, src/, proxies/ and recorder/ to DIR (default dist/)
// and bundles the web console into DIR/console (console/build.mjs)
// with tsc (tsconfig.build.json: `.ts` import specifiers become `.js`), then copies the non-TypeScript files
// the code reads at run time next to the compiled modules, and package.json (the code reads its version
// relative to itself). --no-check skips type checking (`npm run typecheck` does that); the tests use it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({ options: { out: { type: 'string' }, 'no-check': { type: 'boolean' } } });
const out = path.resolve(root, values.out ?? 'dist');

/** Run-time assets: read with paths relative to the module that reads them, so they keep their place. */
const ASSETS = ['recorder/export/ocsf/schema-1.8.0.json'];

fs.rmSync(out, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const args = [tsc, '-p', path.join(root, 'tsconfig.build.json'), '--outDir', out];
if (values['no-check']) args.push('--noCheck');
const r = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: root });
if (r.status !== 0) {
  process.stderr.write(`build: tsc failed (exit ${r.status ?? r.signal})\n`);
  process.exit(1);
}
for (const a of ASSETS) {
  fs.mkdirSync(path.dirname(path.join(out, a)), { recursive: true });
  fs.copyFileSync(path.join(root, a), path.join(out, a));
}
fs.copyFileSync(path.join(root, 'package.json'), path.join(out, 'package.json'));
await writeCommandManifest(path.join(out, 'src/cli'), path.join(out, 'app/commands.js'));
// The web console (console/, bundled by Vite) goes to DIR/console, where the compiled API server finds it.
const { buildConsole } = await import(pathToFileURL(path.join(root, 'console/build.mjs')).href);
await buildConsole(path.join(out, 'console'));

/**
 * dist/src/cli/commands.manifest.json: the command table's descriptions (names, summaries, options with their
 * help, examples) and, per command, the module that defines it. The table is app/commands.ts (the core's
 * commands, listed in src/cli/commands/index.ts, and the proxies'). The compiled CLI reads this instead of
 * importing every command module, so `vigil --help` loads no command code and `vigil audit search` loads only
 * audit.js and what it imports.
 */
async function writeCommandManifest(cliDir, tableFile) {
  const { COMMANDS } = await import(pathToFileURL(tableFile).href);
  const where = new Map();
  const imports = (file) => [...fs.readFileSync(file, 'utf8').matchAll(/from ['"](\.[^'"]+)['"]/g)].map(([, spec]) => path.resolve(path.dirname(file), spec));
  const coreIndex = path.join(cliDir, 'commands/index.js');
  for (const file of [...imports(coreIndex), ...imports(tableFile)]) {
    if (file === coreIndex) continue;
    const mod = await import(pathToFileURL(file).href);
    for (const value of Object.values(mod)) {
      for (const c of Array.isArray(value) ? value : [value]) {
        if (c && typeof c === 'object' && typeof c.run === 'function' && !where.has(c)) where.set(c, path.relative(cliDir, file).split(path.sep).join('/'));
      }
    }
  }
  const entries = COMMANDS.map((c) => {
    const module = where.get(c);
    if (!module) throw new Error(`build: command "${c.name}" is not exported by a module src/cli/commands/index.ts or app/commands.ts imports`);
    const { run: _run, ...described } = c;
    return { ...described, module: './' + module };
  });
  fs.writeFileSync(path.join(cliDir, 'commands.manifest.json'), JSON.stringify(entries) + '\n');
}
process.stdout.write(`built ${path.relative(root, out) || '.'}\n`);
