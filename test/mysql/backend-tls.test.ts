import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';

let w: MyWorld;
beforeAll(async () => {
  w = await startWorld({}, { backendTls: true });
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

describe('mysql proxy: TLS to the backend', () => {
  it('logs in over verified TLS (ed25519 user) and relays queries', async () => {
    const r = await w.cli(['--user=db-tls', '-e', "SELECT CURRENT_USER(); SHOW SESSION STATUS LIKE 'Ssl_version'"]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/ed_user@%/);
    expect(r.stdout).toMatch(/Ssl_version\tTLSv1\.[23]/);
  });
});
