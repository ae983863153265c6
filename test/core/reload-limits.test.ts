import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * What a reload reports as applied is in force for the next connection (pre-auth limits are read at each
 * accept); what the gateway binds at start (recording storage, worker count, the API's TLS handshake and
 * header deadlines) is reported as needing a restart and keeps its running value.
 */

let tg: TestGateway;
let configFile: string;
let doc: Record<string, any>;

beforeAll(async () => {
  const base = tempDir('vigil-reload-limits-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway({ pre_auth: { max_per_source: 32 }, gateway: { max_unauthenticated: 256 } }, base, { configFile });
  doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
});

afterAll(async () => {
  await tg?.stop();
});

function idleSockets(port: number, n: number) {
  return Promise.all(
    Array.from({ length: n }, () => new Promise<{ socket: net.Socket; closed: () => boolean }>((resolve) => {
      let closed = false;
      const socket = net.connect(port, '127.0.0.1', () => resolve({ socket, closed: () => closed }));
      socket.on('error', () => {});
      socket.on('close', () => (closed = true));
    })),
  );
}

describe('limits and start-bound settings across a config reload', () => {
  it('a reloaded pre_auth.max_per_source applies to the next SSH connections', { timeout: 30_000 }, async () => {
    doc.pre_auth = { ...doc.pre_auth, max_per_source: 1 };
    fs.writeFileSync(configFile, JSON.stringify(doc));
    expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true, applied: ['pre_auth'], restart_required: [] });
    const [first, ...rest] = await idleSockets(tg.ports.ssh, 3);
    try {
      // One unauthenticated connection per address: the other two are dropped at once.
      await waitFor(() => rest.every((s) => s.closed()), 5000, 'the connections over the allowance to be dropped');
      expect(first!.closed()).toBe(false);
    } finally {
      for (const s of [first!, ...rest]) s.socket.destroy();
    }
  });

  it('settings bound at start are reported restart_required and keep their running value', { timeout: 30_000 }, async () => {
    const running = tg.gw.services.config;
    const recordings = tg.gw.services.recordings;
    doc.recording = { ...doc.recording, storage: { kind: 's3', bucket: 'new-bucket', endpoint: 'http://127.0.0.1:1', force_path_style: true } };
    doc.gateway = { ...doc.gateway, workers: 4 };
    doc.pre_auth = { ...doc.pre_auth, handshake_timeout: '3s' };
    doc.slow_clients = { ...doc.slow_clients, api_headers_timeout: '2s' };
    fs.writeFileSync(configFile, JSON.stringify(doc));
    const report = await tg.gw.reload({ via: 'test' });
    expect(report.ok).toBe(true);
    expect(report.restart_required!.map((r) => r.key).sort()).toEqual(['gateway.workers', 'pre_auth.handshake_timeout', 'recording.storage', 'slow_clients.api_headers_timeout']);
    expect(report.applied).toEqual([]);
    const now = tg.gw.services.config;
    expect(now.recording.storage).toEqual(running.recording.storage);
    expect(now.gateway.workers).toBe(running.gateway.workers);
    expect(now.pre_auth.handshake_timeout).toBe(running.pre_auth.handshake_timeout);
    expect(now.slow_clients.api_headers_timeout).toBe(running.slow_clients.api_headers_timeout);
    expect(tg.gw.services.recordings).toBe(recordings);
  });
});
