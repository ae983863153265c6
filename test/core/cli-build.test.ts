import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../app/commands.ts';
import { tempDir } from '../support/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * `npm run build` into a temp root that holds only the compiled code, bin/vigil.js and the dependencies:
 * with no sources beside it, `vigil` there can only run what the build produced.
 */
describe('compiled CLI (npm run build)', () => {
  const root = tempDir('vigil-build-');
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  // The compiled CLI must not fall back to the sources (the suite sets VIGIL_FROM_SOURCE for bin/vigil.js).
  const env = { ...process.env, VIGIL_FROM_SOURCE: '', NO_COLOR: '1' };
  const vigil = (...args: string[]) => spawnSync(process.execPath, [path.join(root, 'bin/vigil.js'), ...args], { encoding: 'utf8', env, timeout: 60_000 });

  it('builds, and the compiled vigil runs --help, group help and audit verify on a fresh data dir', { timeout: 180_000 }, () => {
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
    fs.mkdirSync(path.join(root, 'bin'));
    fs.copyFileSync(path.join(ROOT, 'bin/vigil.js'), path.join(root, 'bin/vigil.js'));
    // Type checking is `npm run typecheck`'s job (and the suite's); the build's emit is what is tested here.
    const build = spawnSync('npm', ['run', 'build', '--', '--out', path.join(root, 'dist'), '--no-check'], { cwd: ROOT, encoding: 'utf8', timeout: 170_000 });
    expect(build.status, build.stderr + build.stdout).toBe(0);
    expect(fs.existsSync(path.join(root, 'dist/app/main.js'))).toBe(true);
    expect(fs.existsSync(path.join(root, 'src'))).toBe(false);
    expect(fs.existsSync(path.join(root, 'dist/recorder/export/ocsf/schema-1.8.0.json'))).toBe(true);

    const help = vigil('--help');
    expect(help.status, help.stderr).toBe(0);
    for (const c of COMMANDS) expect(help.stdout).toContain(c.name);
    const audit = vigil('audit', '--help');
    expect(audit.status, audit.stderr).toBe(0);
    expect(audit.stdout).toContain('verify-bundle');
    const search = vigil('audit', 'search', '--help');
    expect(search.stdout).toContain('--limit N');

    const data = path.join(root, 'data');
    const init = vigil('init', '--data', data);
    expect(init.status, init.stderr).toBe(0);
    // Issuing a certificate writes cert.issued to the audit log through the compiled recorder.
    const issue = vigil('cert', 'issue', '--data', data, '--user', 'alice', '--roles', 'dba', '--out', path.join(root, 'alice'));
    expect(issue.status, issue.stderr).toBe(0);
    const verify = vigil('audit', 'verify', '--data', data);
    expect([0, 3, 4], verify.stderr + verify.stdout).toContain(verify.status);
    expect(verify.stdout).toMatch(/audit log (ok|intact)/);
    const search20 = vigil('audit', 'search', '--limit', '20', '--data', data, '--json');
    expect(search20.status, search20.stderr).toBe(0);
    expect(search20.stdout).toContain('"cert.issued"');
  });
});
