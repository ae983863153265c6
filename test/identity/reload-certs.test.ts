import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { createReloader } from '../../src/gateway/reload.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * A reload reports `certs` applied: certificates and tokens issued after it follow the new limits. The
 * identity service holds its own reference to the configuration, so the reload hands it the one it
 * applied; a cluster worker (a follower) is handed what its primary applied and does the same.
 */
let tg: TestGateway;
let base: string;
let configFile: string;

beforeAll(async () => {
  base = tempDir('vigil-reload-certs-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway({ mysql: { enabled: false }, certs: { default_ttl: '8h', max_ttl: '12h' } }, base, { configFile });
}, 120_000);
afterAll(async () => {
  await tg?.stop();
});

const lifetime = (c: { notBefore: Date; notAfter: Date }) => c.notAfter.getTime() - Date.now();
const HOUR = 3_600_000;

describe('config reload of certs', () => {
  it('a lower certs.max_ttl caps certificates and tokens issued after the reload', async () => {
    const id = tg.gw.services.identity;
    expect(lifetime(await id.issue({ user: 'alice', roles: [], ttlMs: 10 * HOUR }))).toBeGreaterThan(9 * HOUR);

    const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    fs.writeFileSync(configFile, JSON.stringify({ ...doc, certs: { default_ttl: '10m', max_ttl: '30m' } }, null, 2));
    const report = await tg.gw.reload({ via: 'test' });
    expect(report.ok).toBe(true);
    expect(report.applied).toContain('certs');

    const cert = await id.issue({ user: 'alice', roles: [], ttlMs: 10 * HOUR });
    expect(lifetime(cert)).toBeLessThanOrEqual(30 * 60_000);
    expect(lifetime(cert)).toBeGreaterThan(29 * 60_000);
    const token = await id.issueToken({ user: 'alice', roles: [], ttlMs: 10 * HOUR });
    expect(lifetime(token)).toBeLessThanOrEqual(30 * 60_000);
    // No TTL asked: the new default.
    expect(lifetime(await id.issue({ user: 'alice', roles: [] }))).toBeLessThanOrEqual(10 * 60_000);
  });

  it('a follower (cluster worker) applies the certs its primary applied', async () => {
    const services = tg.gw.services;
    const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    const next = parseConfig({ ...doc, certs: { default_ttl: '2m', max_ttl: '5m' } }, base);
    const report = await createReloader(services, undefined, [], { follower: true }).reload({ via: 'test' }, next);
    expect(report.ok).toBe(true);
    expect(lifetime(await services.identity.issue({ user: 'alice', roles: [], ttlMs: 10 * HOUR }))).toBeLessThanOrEqual(5 * 60_000);
  });
});
