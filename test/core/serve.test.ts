import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

describe('vigil serve', () => {
  it('creates the CA on first start, serves /healthz, and on SIGTERM seals the log with a final checkpoint', async () => {
    const dir = tempDir();
    const cfg = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(cfg, ['data_dir: data', 'api:', '  listen: 127.0.0.1:0', 'ssh:', '  listen: 127.0.0.1:0', 'postgres:', '  listen: 127.0.0.1:0', 'mysql:', '  listen: 127.0.0.1:0', 'audit:', '  witness:', '    file: witness/head.json', 'gateway:', '  workers: 1', ''].join('\n'));
    fs.mkdirSync(path.join(dir, 'witness'));
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'serve', '--config', cfg], { env: { ...process.env, VIGIL_LOG_JSON: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));

    const running = await waitFor(() => out.split('\n').find((l) => l.includes('vigil gateway running')), 60_000, 'gateway start');
    const ports = JSON.parse(running).ports as Record<string, number>;
    expect(Object.keys(ports).sort()).toEqual(['api', 'mysql', 'postgres', 'ssh']);

    // Keys are private, data dir is private.
    const data = path.join(dir, 'data');
    expect(fs.statSync(data).mode & 0o777).toBe(0o700);
    for (const f of fs.readdirSync(path.join(data, 'ca'))) {
      if (/key$/.test(f) && !f.endsWith('.pub')) expect(fs.statSync(path.join(data, 'ca', f)).mode & 0o777, f).toBe(0o600);
    }

    const health = spawnSync('curl', ['-sk', `https://127.0.0.1:${ports.api}/healthz`], { encoding: 'utf8' });
    expect(health.status).toBe(0);
    expect(health.stdout).toMatch(/ok/i);

    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(out).toContain('shutting down');

    const { records } = await searchAuditLog(path.join(data, 'audit'), {});
    const types = records.map((r) => r.event.type);
    expect(types).toContain('ca.created');
    expect(types).toContain('gateway.started');
    const stopped = types.lastIndexOf('gateway.stopped');
    expect(stopped).toBeGreaterThan(0);
    expect(types.at(-1)).toBe('audit.checkpoint');

    const verify = spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'audit', 'verify', '--config', cfg], { encoding: 'utf8' });
    expect(verify.stderr).toBe('');
    expect(verify.status).toBe(3); // intact and sealed; without --witness completeness is not proven
    // The gateway published every signed head to the configured witness, the last one before it exited.
    const witnessed = spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'audit', 'verify', '--config', cfg, '--witness', path.join(dir, 'witness/head.json')], { encoding: 'utf8' });
    expect(witnessed.stderr).toBe('');
    expect(witnessed.stdout).toContain('complete up to the witnessed head');
    expect(witnessed.status).toBe(0);
  });
});
