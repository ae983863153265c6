#!/usr/bin/env node
// Entry point for `vigil`/`npx vigil`. Runs the compiled code in dist/ when it has been built (`npm run build`),
// which starts in a fraction of the time; otherwise (or with VIGIL_FROM_SOURCE=1, which the tests set so a
// stale dist/ is never what they test) registers tsx and runs the TypeScript sources.
import fs from 'node:fs';

const compiled = new URL('../dist/app/main.js', import.meta.url);
let runCli;
if (!process.env.VIGIL_FROM_SOURCE && fs.existsSync(compiled)) {
  ({ runCli } = await import(compiled.href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ runCli } = await import('../app/main.ts'));
}
process.exitCode = await runCli(process.argv.slice(2));
