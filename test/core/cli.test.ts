import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { COMMANDS } from '../../app/commands.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const vigil = (...args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), ...args], { encoding: 'utf8', timeout: 30_000 });

describe('vigil CLI', () => {
  it('--help lists every command', () => {
    const r = vigil('--help');
    expect(r.status).toBe(0);
    for (const c of COMMANDS) expect(r.stdout).toContain(c.name);
    for (const name of ['serve', 'init', 'config check', 'cert issue', 'cert revoke', 'audit verify', 'audit search', 'audit tail', 'replay', 'sessions list', 'access request', 'access approve', 'lock user']) {
      expect(COMMANDS.map((c) => c.name), name).toContain(name);
    }
  });

  it('an unknown command or flag exits 2 with usage', () => {
    const r = vigil('frobnicate');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown command');
    const f = vigil('config', 'check', '--no-such-flag');
    expect(f.status).toBe(2);
    expect(f.stderr).toContain('Usage: vigil config check');
  });
});
