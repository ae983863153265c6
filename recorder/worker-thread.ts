/**
 * Source of a worker thread that runs one of this package's modules, compiled or not: `new Worker(src,
 * { eval: true })`. Compiled (dist/), the worker imports the compiled module as is; run from sources, it
 * registers tsx first (in a worker thread the parent's loader does not apply).
 */
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

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
