import fs from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Durations that arm Node timers must fit one: setTimeout turns anything above 2^31-1 ms (about 24.8
 * days) into 1 ms. A reload setting `gateway.auth_timeout: 25d` (meant as "practically never") would
 * otherwise be applied and cut every new connection on every listener at once; `0` does the same. Such a
 * file is refused like any invalid one, naming the key, and the running configuration keeps serving.
 */

let tg: TestGateway;
let configFile: string;
let doc: Record<string, any>;

beforeAll(async () => {
  const base = tempDir('vigil-review2-timers-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway({}, base, { configFile });
  doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
});

afterAll(async () => {
  await tg?.stop();
});

/** An SSH client reaching the end of key exchange on the gateway's listener (its connection survived the pre-auth deadlines). */
function sshKeyExchange(port: number): Promise<'handshake' | string> {
  return new Promise((resolve) => {
    const c = new ssh2.Client();
    c.on('handshake', () => {
      resolve('handshake');
      c.end();
    });
    c.on('error', (e) => resolve(`error: ${e.message}`));
    c.on('close', () => resolve('closed before key exchange'));
    c.connect({ host: '127.0.0.1', port, username: 'nobody', hostVerifier: () => true, readyTimeout: 60_000 });
  });
}

describe('timer durations in a reloaded config', () => {
  it.each([
    ['gateway', 'auth_timeout', '25d'],
    ['pre_auth', 'handshake_timeout', '30d'],
    ['gateway', 'auth_timeout', 0],
    ['pre_auth', 'handshake_timeout', '0s'],
  ])('%s.%s: %s is refused, the running deadlines keep serving', { timeout: 60_000 }, async (section, key, value) => {
    const running = tg.gw.services.config;
    fs.writeFileSync(configFile, JSON.stringify({ ...doc, [section]: { ...doc[section], [key]: value } }));
    const report = await tg.gw.reload({ via: 'test' });
    expect(report.ok).toBe(false);
    expect(report.error?.key).toBe(`${section}.${key}`);
    expect(tg.gw.services.config).toBe(running);
    await tg.waitForEvent((e) => e.type === 'config.reload_failed' && JSON.stringify(e.details).includes(`${section}.${key}`));
    expect(await sshKeyExchange(tg.ports.ssh)).toBe('handshake');
  });

  it('a timer past the largest Node timer is refused at load too, naming the key', async () => {
    fs.writeFileSync(configFile, JSON.stringify({ ...doc, slow_clients: { write_stall_timeout: '25d' } }));
    const report = await tg.gw.reload({ via: 'test' });
    expect(report.error?.key).toBe('slow_clients.write_stall_timeout');
    expect(report.error?.message).toMatch(/at most/);
  });

  it('long durations that are not timers (retention, certificate lifetimes) stay allowed', async () => {
    fs.writeFileSync(configFile, JSON.stringify({ ...doc, retention: { default: '800d' }, certs: { max_ttl: '60d', default_ttl: '30d' } }));
    expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true });
  });
});
