import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { clientEnv } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * A session authorized under the old roles whose registration comes after a reload committed (the reload
 * ran while its auth.success was being written) is authorized again and cut with reason config_reload:
 * the reload's cut of live sessions could not see it.
 */

let tg: TestGateway;
let hole: net.Server;
let configFile: string;

beforeAll(async () => {
  // A backend that accepts and never answers: had the session started, it would stay open waiting for it.
  hole = net.createServer(() => {});
  await new Promise<void>((r) => hole.listen(0, '127.0.0.1', () => r()));
  const base = tempDir('vigil-reload-admission-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway(
    {
      gateway: { connect_timeout: '20s' },
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: (hole.address() as net.AddressInfo).port, database: 'app', user: 'u', tls: 'disable' }],
      roles: [{ name: 'ops', targets: ['pg'] }, { name: 'admin' }],
    },
    base,
    { configFile },
  );
});

afterAll(async () => {
  await tg?.stop();
  hole?.close();
});

describe('admission racing a config reload', () => {
  it('cuts a session authorized under roles a reload removed before it was registered', { timeout: 30_000 }, async () => {
    const alice = await tg.issue({ user: 'alice', roles: ['ops'] });
    const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    const events = tg.gw.services.events;
    const emit = events.emit.bind(events);
    let reloaded: Promise<unknown> | undefined;
    // The window: while alice's auth.success is being written, an operator reloads a config without her role.
    events.emit = (async (e: Parameters<typeof emit>[0]) => {
      if (e.type === 'auth.success' && e.actor.user === 'alice' && !reloaded) {
        doc.roles = [{ name: 'admin' }];
        fs.writeFileSync(configFile, JSON.stringify(doc));
        reloaded = tg.gw.reload({ via: 'test' });
        await reloaded;
      }
      return emit(e);
    }) as typeof events.emit;
    const psql = spawn(
      'psql',
      ['-X', '-qAt', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`, '-c', 'select 1'],
      { env: clientEnv() },
    );
    let stderr = '';
    psql.stderr.on('data', (d) => (stderr += d));
    try {
      const ended = (e: AuditEvent) => e.type === 'session.end' && e.actor.user === 'alice';
      await waitFor(() => tg.events.some(ended), 10_000);
      expect(await reloaded).toMatchObject({ ok: true, roles: { removed: ['ops'] } });
      expect(tg.events.find(ended)!.details).toMatchObject({ reason: 'config_reload' });
      expect(tg.gw.services.sessions.list().filter((s) => s.principal.user === 'alice')).toEqual([]);
      await waitFor(() => psql.exitCode !== null, 5000);
      expect(stderr).toMatch(/configuration changed/);
    } finally {
      events.emit = emit;
      psql.kill('SIGKILL');
    }
  });
});
