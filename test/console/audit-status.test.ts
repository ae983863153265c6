import fs from 'node:fs';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { ConsoleClient } from '../support/console.ts';
import { tempDir } from '../support/tmp.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { listSegments, verifyAuditLog } from '../../recorder/audit/index.ts';
import { VERIFY_MIN_GAP_MS } from '../../src/console/audit-status.ts';

/**
 * The console's Audit chain page verifies the whole log: on a real gateway with a large real audit log,
 * the verification runs in a worker (the gateway's event loop, which relays sessions, stays free), at most
 * one at a time, never more often than its bounds allow, and still finds tampering.
 */

const EVENTS = 100_000;
let tg: TestGateway;
let auditor: ConsoleClient;

beforeAll(async () => {
  tg = await startTestGateway({ roles: [{ name: 'auditor' }], access: { auditor_roles: ['auditor'] } }, tempDir('vigil-console-audit-status-'));
  const aud = await tg.issue({ user: 'audrey', roles: ['auditor'] });
  auditor = new ConsoleClient(`https://127.0.0.1:${tg.ports.api}`, aud.creds.caCertificate, { cert: aud.creds.x509Certificate, key: aud.creds.x509PrivateKey });
  expect((await auditor.signIn()).status).toBe(200);
  const ev = tg.gw.services.events;
  const written: Promise<unknown>[] = [];
  for (let i = 0; i < EVENTS; i++) {
    written.push(ev.emit({ type: 'api.request', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '127.0.0.1' }, target: { name: 'api', protocol: 'https' }, details: { i, pad: 'y'.repeat(200) } }));
  }
  await Promise.all(written);
}, 120_000);

afterAll(async () => {
  await tg?.stop();
});

describe('GET /console/api/audit/status', () => {
  it('verifies in a worker: concurrent verify=now calls share one run, the event loop stays free, a run is not restarted at will, tampering is found', async () => {
    const paths = dataPaths(tg.dataDir);
    // What the same verification costs on this thread, measured here: the bound below is relative to it.
    const t0 = performance.now();
    const direct = verifyAuditLog(paths.audit, fs.readFileSync(paths.auditPublicKey));
    const verifyMs = performance.now() - t0;
    expect(direct.records).toBeGreaterThan(EVENTS);

    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const replies = await Promise.all(Array.from({ length: 6 }, () => auditor.get('/console/api/audit/status?verify=now')));
    loop.disable();
    for (const r of replies) expect(r.status).toBe(200);
    // Each run is numbered: equal numbers are one verification.
    expect(replies[0].body.verify.run).toEqual(expect.any(Number));
    const runs = new Set(replies.map((r) => r.body.verify.run));
    expect(runs.size, 'concurrent calls share one verification').toBe(1);
    const first = replies[0].body.verify;
    expect(first.records).toBeGreaterThanOrEqual(direct.records);
    expect(['complete', 'unwitnessed', 'unsealed-tail']).toContain(first.status);
    // Verifying on the gateway's thread blocks it for a whole verification per call.
    expect(loop.max / 1e6, `longest event-loop stall (ms) vs one verification (${verifyMs.toFixed(0)} ms)`).toBeLessThan(verifyMs / 2);

    // Right after a run, neither `verify=now` nor new events start another: the latest is served, with its age.
    await tg.gw.services.events.emit({ type: 'api.request', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '127.0.0.1' }, target: { name: 'api', protocol: 'https' }, details: {} });
    for (const p of ['/console/api/audit/status?verify=now', '/console/api/audit/status']) {
      const again = await auditor.get(p);
      expect(again.body.verify.run, p).toBe(first.run);
      expect(again.body.verify.age_ms).toBeGreaterThanOrEqual(0);
      expect(again.body.chain_seq).toBeGreaterThan(again.body.verify.last_seq);
    }

    // Alter one byte of an old record (in place, the writer keeps appending), then ask until a new run may start.
    const segment = path.join(paths.audit, listSegments(paths.audit)[0]);
    const fd = fs.openSync(segment, 'r+');
    try {
      const text = fs.readFileSync(segment);
      const at = text.indexOf('"pad":"y');
      expect(at).toBeGreaterThan(0);
      fs.writeSync(fd, Buffer.from('z'), 0, 1, at + '"pad":"'.length);
    } finally {
      fs.closeSync(fd);
    }
    const tampered = await vi.waitFor(
      async () => {
        const r = await auditor.get('/console/api/audit/status?verify=now');
        expect(r.body.verify.run).toBeGreaterThan(first.run);
        return r.body.verify;
      },
      { timeout: VERIFY_MIN_GAP_MS + 30_000, interval: 500 },
    );
    expect(tampered.run).toBe(first.run + 1);
    expect(tampered.status).toBe('invalid');
    expect(tampered.ok).toBe(false);
    expect(tampered.first_bad.kind).toBe('hash-mismatch');
  }, 120_000);
});
