import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { httpReceiver } from '../support/http-receiver.ts';
import { SqliteOutbox } from '../../src/notifiers/outbox.ts';

/**
 * A webhook URL with credentials (`http://user:password@host/`, given as a secret file): the notifier
 * delivers with them as Basic authorization to a real receiver, and the password is nowhere in the logs,
 * the outbox (last_error of a failing one) or `vigil alerts list`.
 */

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('webhook URL with credentials', () => {
  it('delivers with Basic authorization; the password never shows in logs, outbox or CLI output', async () => {
    const SECRET = 'TOPSECRET';
    const rx = await httpReceiver();
    cleanups.push(rx.close);
    const down = await freePort(); // nothing listens: its deliveries fail and keep an error
    const base = tempDir('vigil-hook-creds-');
    const goodFile = path.join(base, 'good-url');
    const downFile = path.join(base, 'down-url');
    fs.writeFileSync(goodFile, `${rx.url('/hook').replace('http://', `http://u:${SECRET}@`)}\n`, { mode: 0o600 });
    fs.writeFileSync(downFile, `http://u:${SECRET}@127.0.0.1:${down}/hook\n`, { mode: 0o600 });
    const logged: string[] = [];
    const log = pino({ level: 'debug' }, new Writable({ write(c, _e, cb) { logged.push(c.toString()); cb(); } }));
    const config = {
      ssh: { enabled: false },
      mysql: { enabled: false },
      postgres: { enabled: false },
      notifiers: [
        { name: 'good', kind: 'webhook', url: { file: goodFile }, backoff_initial: '50ms', backoff_max: '100ms', timeout: '1s' },
        { name: 'down', kind: 'webhook', url: { file: downFile }, backoff_initial: '50ms', backoff_max: '100ms', timeout: '1s', max_attempts: 2 },
      ],
      alerts: [{ name: 'any-failure', match: { type: 'auth.failure' }, notify: ['good', 'down'] }],
    };
    const tg: TestGateway = await startTestGateway(config, base, { log });
    cleanups.push(() => tg.stop());
    await tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: 'db', protocol: 'postgres' } });

    await waitFor(() => rx.accepted.length === 1, 10_000, 'the delivery');
    expect(rx.accepted[0].path).toBe('/hook');
    expect(Buffer.from(String(rx.accepted[0].headers.authorization).replace(/^Basic /, ''), 'base64').toString()).toBe(`u:${SECRET}`);
    const outbox = tg.gw.services.alerts!.outbox;
    const dead = await waitFor(async () => (await outbox.deadLetters()).find((d) => d.notifier === 'down'), 10_000, 'the dead letter');
    expect(dead.last_error).toContain('POST to the configured URL failed');

    const configFile = path.join(base, 'vigil.yaml');
    fs.writeFileSync(configFile, JSON.stringify({ ...config, data_dir: tg.dataDir }));
    const json = await runCliCaptured(['alerts', 'list', '--json', '--config', configFile]);
    const text = await runCliCaptured(['alerts', 'list', '--config', configFile]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.out).dead_letters[0]).toMatchObject({ notifier: 'down', last_error: expect.stringContaining('failed') });
    await tg.stop();
    const stored = new SqliteOutbox(tg.dataDir);
    cleanups.push(() => stored.close());
    const everything = [
      ...logged,
      JSON.stringify(await stored.deadLetters()),
      JSON.stringify(await stored.pending()),
      JSON.stringify(await stored.recentFirings()),
      json.out,
      json.err ?? '',
      text.out,
      text.err ?? '',
    ].join('\n');
    expect(logged.some((l) => l.includes('notification delivery failed'))).toBe(true);
    expect(everything).not.toContain(SECRET);
  });
});
