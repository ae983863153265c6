import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/** Shutdown uses the drain settings in force when it begins, reloaded or not. */

function readyz(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get({ host: '127.0.0.1', port, path: '/readyz', rejectUnauthorized: false, agent: false, timeout: 5000 }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    }).on('error', reject);
  });
}

describe('shutdown after a config reload', () => {
  it('waits the reloaded gateway.drain_notice with /readyz answering 503', { timeout: 30_000 }, async () => {
    const base = tempDir('vigil-reload-shutdown-');
    const configFile = path.join(base, 'vigil.yaml');
    const tg = await startTestGateway({ gateway: { drain_notice: 0 } }, base, { configFile });
    const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    doc.gateway = { ...doc.gateway, drain_notice: '300ms' };
    fs.writeFileSync(configFile, JSON.stringify(doc));
    expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true, applied: ['gateway'] });
    expect(await readyz(tg.ports.api)).toBe(200);
    const started = Date.now();
    const closed = tg.stop();
    // The listeners stay open during the notice: balancers see the replica draining.
    expect(await readyz(tg.ports.api)).toBe(503);
    await closed;
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });
});
