import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, it, expect } from 'vitest';
import { loadConfig, parseConfig } from '../../app/config.ts';
import { parseDuration, parseSize, parseListen } from '../../src/config/units.ts';
import { tempDir } from '../support/tmp.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');

function errorOf(fn: () => unknown): { message: string; path: string; code: string } {
  try {
    fn();
  } catch (e) {
    return e as never;
  }
  throw new Error('expected a config error');
}

describe('config validation', () => {
  it('names the key of a wrong type', () => {
    const e = errorOf(() => parseConfig({ targets: [{ name: 'web', protocol: 'ssh', host: 'h', port: '22' }] }, '/tmp'));
    expect(e.code).toBe('VIGIL_CONFIG_INVALID');
    expect(e.path).toBe('targets[0].port');
    expect(e.message).toMatch(/^targets\[0\]\.port: .*number/);
  });

  it('refuses a second target (same protocol) or role of one name; one name across protocols is fine', () => {
    const t = (protocol: string) => ({ name: 'db1', protocol, host: 'h', port: 5432, database: 'app', user: 'u' });
    const twice = errorOf(() => parseConfig({ targets: [t('postgres'), t('postgres')] }, '/tmp'));
    expect(twice.path).toBe('targets[1].name');
    expect(twice.message).toMatch(/the postgres target db1 is defined twice/);
    expect(() => parseConfig({ targets: [t('postgres'), { name: 'db1', protocol: 'ssh', host: 'h', port: 22 }] }, '/tmp')).not.toThrow();
    expect(errorOf(() => parseConfig({ roles: [{ name: 'dev' }, { name: 'dev' }] }, '/tmp')).message).toMatch(/roles\[1\]\.name: .*the role dev is defined twice/);
  });

  it('names an unknown key, nested or top level', () => {
    expect(errorOf(() => parseConfig({ gateway: { tls_san: [] } }, '/tmp')).message).toBe('gateway.tls_san: unknown key');
    expect(errorOf(() => parseConfig({ dataa_dir: 'x' }, '/tmp')).path).toBe('dataa_dir');
    expect(errorOf(() => parseConfig({ targets: [{ name: 'w', protocol: 'telnet', host: 'h', port: 1 }] }, '/tmp')).message).toMatch(/targets\[0\]\.protocol: unknown protocol/);
  });

  it('names the key of a referenced file that is missing, and the path of a missing config file', () => {
    const dir = tempDir();
    const e = errorOf(() => parseConfig({ targets: [{ name: 'web', protocol: 'ssh', host: 'h', port: 22, private_key: 'keys/none' }] }, dir));
    expect(e.path).toBe('targets[0].private_key');
    expect(e.message).toContain(path.join(dir, 'keys/none'));
    const missing = errorOf(() => loadConfig({ configPath: path.join(dir, 'nope.yaml') }));
    expect(missing.message).toContain('nope.yaml');
    expect(missing.message).toContain('no such file');
  });

  it('rejects bad durations, sizes and listen addresses with the key', () => {
    expect(errorOf(() => parseConfig({ certs: { max_ttl: 'forever' } }, '/tmp')).path).toBe('certs.max_ttl');
    expect(errorOf(() => parseConfig({ audit: { segment_max_bytes: '12 parsecs' } }, '/tmp')).path).toBe('audit.segment_max_bytes');
    expect(errorOf(() => parseConfig({ ssh: { listen: '2222' } }, '/tmp')).path).toBe('ssh.listen');
  });

  it('names the new recording, audit and API keys when their values are wrong', () => {
    expect(errorOf(() => parseConfig({ recording: { binary_output: 'base64' } }, '/tmp')).path).toBe('recording.binary_output');
    expect(errorOf(() => parseConfig({ audit: { background_commit_window: 'soon' } }, '/tmp')).path).toBe('audit.background_commit_window');
    expect(errorOf(() => parseConfig({ api: { refused_calls_per_minute: 0 } }, '/tmp')).path).toBe('api.refused_calls_per_minute');
    expect(errorOf(() => parseConfig({ api: { refused_calls_per_minute: 2.5 } }, '/tmp')).path).toBe('api.refused_calls_per_minute');
  });

  it('recording.storage: local by default; s3 with S3 limits, credentials only by reference and both or neither', () => {
    expect(parseConfig({}, '/tmp').recording.storage).toEqual({ kind: 'local' });
    const s3 = { kind: 's3', bucket: 'vigil-rec', access_key_id: { env: 'K' }, secret_access_key: { env: 'S' } };
    const ok = parseConfig({ recording: { storage: s3 } }, '/tmp').recording.storage;
    expect(ok).toMatchObject({ kind: 's3', bucket: 'vigil-rec', prefix: '', region: 'us-east-1', part_size: 8 * 1024 * 1024, flush_interval: 10_000, keep_local: false });
    expect(errorOf(() => parseConfig({ recording: { storage: { ...s3, part_size: '1MiB' } } }, '/tmp')).path).toBe('recording.storage.part_size');
    // A literal secret is refused: it would sit in the parsed config (which may be logged).
    expect(errorOf(() => parseConfig({ recording: { storage: { ...s3, secret_access_key: 'hunter2' } } }, '/tmp')).path).toBe('recording.storage.secret_access_key');
    expect(errorOf(() => parseConfig({ recording: { storage: { kind: 's3', bucket: 'vigil-rec', access_key_id: { env: 'K' } } } }, '/tmp')).path).toBe('recording.storage.access_key_id');
    expect(errorOf(() => parseConfig({ recording: { storage: { ...s3, bucket: 'Not_A_Bucket' } } }, '/tmp')).path).toBe('recording.storage.bucket');
  });

  it('names a redaction pattern that is not a regular expression', () => {
    const e = errorOf(() => parseConfig({ redaction: { patterns: ['secret', 'pass(word'] } }, '/tmp'));
    expect(e.path).toBe('redaction.patterns[1]');
    expect(e.message).toContain('not a valid regular expression');
  });

  it('fills defaults: embedded data dir, listener ports, ttl caps', () => {
    const c = parseConfig({}, '/tmp');
    expect(c.data_dir).toBe('./data');
    expect((c.ssh as { listen: { port: number } }).listen.port).toBe(2222);
    expect((c.postgres as { listen: { port: number } }).listen.port).toBe(6432);
    expect((c.mysql as { listen: { port: number } }).listen.port).toBe(3307);
    expect(c.certs.max_ttl).toBe(12 * 3600_000);
    expect(c.certs.default_ttl).toBe(3600_000);
  });

  it('parses units', () => {
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('90')).toBe(90_000);
    expect(parseDuration('1h 30m')).toBeUndefined();
    expect(parseDuration('')).toBeUndefined();
    expect(parseSize('64MiB')).toBe(64 * 1024 * 1024);
    expect(parseSize('1GB')).toBe(1e9);
    expect(parseSize('3 furlongs')).toBeUndefined();
    expect(parseListen('[::1]:22')).toEqual({ host: '::1', port: 22 });
    expect(parseListen(':8443')).toEqual({ host: '0.0.0.0', port: 8443 });
    expect(parseListen('h:70000')).toBeUndefined();
  });

  it('the shipped example config is valid', () => {
    const { config } = loadConfig({ configPath: path.join(ROOT, 'config/vigil.example.yaml'), checkFiles: false });
    expect(config.targets.length).toBeGreaterThanOrEqual(3);
    expect(config.roles.length).toBeGreaterThanOrEqual(2);
  });

  it('`vigil config check` exits non-zero naming the key, before opening any port', () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.yaml');
    fs.writeFileSync(file, 'ssh:\n  listen: 127.0.0.1:2222\n  lsiten: oops\n');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'config', 'check', '--config', file], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('ssh.lsiten: unknown key');
    const serve = spawnSync(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'serve', '--config', file, '--data', path.join(dir, 'data')], { encoding: 'utf8', timeout: 20_000 });
    expect(serve.status).toBe(1);
    expect(serve.stderr).toContain('ssh.lsiten: unknown key');
    expect(fs.existsSync(path.join(dir, 'data'))).toBe(false);
  });
});
