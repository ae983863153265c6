import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(import.meta.dirname, '../..');

function tsFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)));
}

/**
 * Every module a file imports (static, `export ... from`, `import type`, dynamic `import('...')`), as paths
 * relative to the repository. TypeScript's own pre-processor reads them, so comments and strings that merely
 * look like imports are not taken for any.
 */
function importsOf(file: string): string[] {
  const info = ts.preProcessFile(fs.readFileSync(path.join(ROOT, file), 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec)));
}

/** `from` may not import anything under one of `forbidden`: the arrows of one layer, listed as `file -> import`. */
function crossings(from: string, forbidden: string[]): string[] {
  return tsFiles(from).flatMap((file) =>
    importsOf(file)
      .filter((target) => forbidden.some((f) => target === f || target.startsWith(f + path.sep)))
      .map((target) => `${file} -> ${target}`),
  );
}

describe('layering: app/ above proxies/ above src/', () => {
  it('reads imports of every kind (so the checks below are not empty)', () => {
    const gateway = importsOf('src/gateway/gateway.ts');
    expect(gateway).toContain(path.join('recorder', 'audit', 'index.ts'));
    expect(gateway).toContain(path.join('src', 'gateway', 'proxy.ts')); // `import type`
    expect(importsOf('src/cli/commands/gateway.ts')).toContain(path.join('src', 'gateway', 'gateway.ts')); // import('...')
    expect(importsOf('app/commands.ts')).toContain(path.join('proxies', 'ssh', 'cli.ts'));
  });

  it('no file under src/ imports from proxies/ or app/ (the composition root, app/, wires them together)', () => {
    expect(tsFiles('src').length).toBeGreaterThan(50);
    expect(crossings('src', ['proxies', 'app'])).toEqual([]);
  });

  it('no file under proxies/ imports from app/', () => {
    expect(crossings('proxies', ['app'])).toEqual([]);
  });
});
