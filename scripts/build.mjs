#!/usr/bin/env node
// `npm run build [-- --out DIR] [-- --no-check]`: compiles src/, proxies/ and recorder/ to DIR (default dist/)
// with tsc (tsconfig.build.json: `.ts` import specifiers become `.js`), then copies the non-TypeScript files
// the code reads at run time next to the compiled modules, and package.json (the code reads its version
// relative to itself). --no-check skips type checking (`npm run typecheck` does that); the tests use it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
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
process.stdout.write(`built ${path.relative(root, out) || '.'}\n`);
