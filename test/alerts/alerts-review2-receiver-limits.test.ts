import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * A group value is chosen by whoever caused the events: the user name an unauthenticated client sent in a
 * brute force, say. Slack refuses a message whose section text exceeds 3000 characters or a field 2000
 * (HTTP 400 invalid_blocks); PagerDuty refuses a dedup_key over 255 characters (HTTP 400). A long user
 * name must not get the brute-force alert refused by the very channels that should show it.
 */

interface Seen {
  path: string;
  body: any;
  refused?: string;
}

/** A real HTTP receiver that checks what Slack and PagerDuty document, answering 400 like they do. */
async function strictReceiver() {
  const seen: Seen[] = [];
  const problems = (pth: string, body: any): string[] => {
    const out: string[] = [];
    if (pth === '/slack') {
      for (const b of body.blocks ?? []) {
        if (b.type === 'section' && b.text && b.text.text.length > 3000) out.push(`section text of ${b.text.text.length} characters`);
        for (const f of b.fields ?? []) if (f.text.length > 2000) out.push(`field of ${f.text.length} characters`);
        if ((b.fields ?? []).length > 10) out.push('more than 10 fields');
        for (const e of b.type === 'context' ? b.elements : []) if (e.text.length > 3000) out.push(`context text of ${e.text.length} characters`);
      }
    }
    if (pth === '/pd') {
      if (typeof body.dedup_key !== 'string' || body.dedup_key.length > 255) out.push(`dedup_key of ${String(body.dedup_key).length} characters`);
      if (body.payload && body.payload.summary.length > 1024) out.push('summary over 1024 characters');
    }
    return out;
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString());
      const bad = problems(req.url ?? '', body);
      seen.push({ path: req.url ?? '', body, refused: bad.length ? bad.join('; ') : undefined });
      if (bad.length) res.writeHead(400).end(req.url === '/slack' ? 'invalid_blocks' : JSON.stringify({ status: 'invalid event', errors: bad }));
      else res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: (p: string) => `http://127.0.0.1:${port}${p}`,
    seen,
    close: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('alerts: a long client-chosen group value', () => {
  it('still reaches Slack and PagerDuty within their documented limits; trigger and resolve share a dedup key', async () => {
    const rx = await strictReceiver();
    cleanups.push(rx.close);
    const base = tempDir('vigil-review2-limits-');
    const keyFile = path.join(base, 'pd-key');
    fs.writeFileSync(keyFile, 'RK', { mode: 0o600 });
    const once = { max_attempts: 1, backoff_initial: '50ms', backoff_max: '100ms', timeout: '5s' };
    const tg: TestGateway = await startTestGateway(
      {
        ssh: { enabled: false },
        mysql: { enabled: false },
        postgres: { enabled: false },
        notifiers: [
          { name: 'chat', kind: 'slack', url: rx.url('/slack'), ...once },
          { name: 'pager', kind: 'pagerduty', url: rx.url('/pd'), routing_key: { file: keyFile }, ...once },
        ],
        alerts: [{ name: 'brute-force', match: { type: 'auth.failure' }, group_by: ['actor.user'], window: '300ms', notify: ['chat', 'pager'] }],
      },
      base,
    );
    cleanups.push(() => tg.stop());
    // Each `<` and `&` grows fivefold or fourfold once escaped for Slack.
    const user = '<&'.repeat(700);
    await tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user, roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: 'db', protocol: 'postgres' } });

    // Trigger and resolve, to each receiver: one attempt each (max_attempts 1), accepted or refused.
    await waitFor(() => rx.seen.filter((s) => s.path === '/slack').length === 2 && rx.seen.filter((s) => s.path === '/pd').length === 2, 15_000, 'trigger and resolve at both receivers');
    expect(rx.seen.filter((s) => s.refused).map((s) => `${s.path}: ${s.refused}`)).toEqual([]);
    await waitFor(async () => Object.keys(await tg.gw.services.alerts!.outbox.depth()).length === 0, 5000, 'empty outbox');
    expect(await tg.gw.services.alerts!.outbox.deadLetters()).toEqual([]);

    const [trigger, resolve] = rx.seen.filter((s) => s.path === '/pd').map((s) => s.body);
    expect(trigger.event_action).toBe('trigger');
    expect(resolve).toEqual({ routing_key: 'RK', event_action: 'resolve', dedup_key: trigger.dedup_key });
    // The full group value still reaches PagerDuty in the details.
    expect(trigger.payload.custom_details.group['actor.user']).toBe(user);

    const slack = rx.seen.find((s) => s.path === '/slack')!.body;
    const userField = slack.blocks[1].fields.find((f: { text: string }) => f.text.startsWith('*actor.user*'));
    // Cut, marked as cut, and never in the middle of an entity (`&l…` would show as typed text).
    expect(userField.text).toMatch(/^\*actor\.user\*\n(&lt;&amp;)+(&lt;)?…$/);
  });
});
