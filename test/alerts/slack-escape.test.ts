import fs from 'node:fs';
import https from 'node:https';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { httpReceiver } from '../support/http-receiver.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Slack messages carry text that requesters and clients choose (an access request's reason, the target
 * name an unauthenticated client asked for). Sent by a real gateway to a real HTTP receiver, that text is
 * escaped: it can make no mention (`<!channel>`), no link (`<url|label>`) and no extra line, in `text`
 * and in `blocks` alike.
 */

const MENTION_AND_LINK = '<!channel> <https://evil.example/v1/access/links/x|Approve here> & co';

let rx: Awaited<ReturnType<typeof httpReceiver>>;
let tg: TestGateway;
let alice: IssuedFiles;

beforeAll(async () => {
  rx = await httpReceiver();
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      mysql: { enabled: false },
      postgres: { enabled: false },
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 9, database: 'app', user: 'app', labels: { env: 'prod' } }],
      roles: [{ name: 'engineer' }, { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' }, { name: 'sre-lead' }],
      notifiers: [{ name: 'chat', kind: 'slack', url: rx.url('/slack'), backoff_initial: '100ms' }],
      alerts: [{ name: 'unknown-target', match: { type: 'auth.failure' }, group_by: ['target.name'], notify: ['chat'] }],
      access: { approvals: { notify: ['chat'] } },
    },
    tempDir('vigil-slack-escape-'),
  );
  alice = await tg.issue({ user: 'alice', roles: ['engineer'] });
}, 60_000);

afterAll(async () => {
  await tg?.stop();
  await rx?.close();
});

/** The mrkdwn text objects of a message's blocks. */
function mrkdwnObjects(message: { blocks: unknown[] }): { text: string; verbatim?: boolean }[] {
  const out: { text: string; verbatim?: boolean }[] = [];
  const walk = (v: unknown): void => {
    if (Array.isArray(v)) return v.forEach(walk);
    if (!v || typeof v !== 'object') return;
    const o = v as Record<string, unknown>;
    if (o.type === 'mrkdwn') out.push(o as { text: string; verbatim?: boolean });
    for (const x of Object.values(o)) walk(x);
  };
  walk(message.blocks);
  return out;
}

/** Every string Slack renders as mrkdwn in a message: `text` and each text object of the blocks. */
const mrkdwnTexts = (message: { text: string; blocks: unknown[] }) => [message.text, ...mrkdwnObjects(message).map((o) => o.text)];

/** Slack turns no plain URL or `@here` of the data into a link or mention of its own either. */
const allVerbatim = (message: { blocks: unknown[] }) => mrkdwnObjects(message).every((o) => o.verbatim === true);

/** What Slack would parse as a control sequence: a mention, a link, a user or channel reference. */
const controlSequences = (text: string) => text.match(/<[^>]*>/g) ?? [];

function fileRequest(reason: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify({ role: 'prod-access', reason, ttl: '30m' });
    const req = https.request(
      `https://127.0.0.1:${tg.ports.api}/v1/access/requests`,
      { method: 'POST', agent: false, ca: fs.readFileSync(alice.ca), cert: fs.readFileSync(alice.crt), key: fs.readFileSync(alice.key), headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('Slack messages escape what requesters and clients wrote', () => {
  it('an access request reason shows as typed: no channel ping, no link beside the real Approve button', async () => {
    const filed = await fileRequest(`db fix ${MENTION_AND_LINK} *urgent*`);
    expect(filed.status).toBe(201);
    const got = await waitFor(() => rx.accepted.find((r) => r.path === '/slack' && r.body.includes(filed.body.request.id)), 10_000, 'the Slack message of the request');
    const message = JSON.parse(got.body);
    const texts = mrkdwnTexts(message);
    expect(texts.flatMap(controlSequences)).toEqual([]);
    expect(texts.join('\n')).toContain('db fix &lt;!channel&gt; &lt;https://evil.example/v1/access/links/x|Approve here&gt; &amp; co *urgent*');
    expect(allVerbatim(message)).toBe(true);
    const buttons = message.blocks.find((b: { type: string }) => b.type === 'actions').elements;
    expect(buttons.map((b: { url: string }) => new URL(b.url).origin)).toEqual([`https://127.0.0.1:${tg.ports.api}`, `https://127.0.0.1:${tg.ports.api}`]);
  });

  it('an alert group value chosen by an unauthenticated client is escaped and kept on one line', async () => {
    const asked = `${MENTION_AND_LINK}\n*Rule*\nall-clear`;
    await tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: asked, protocol: 'postgres' } });
    const got = await waitFor(() => rx.accepted.find((r) => r.path === '/slack' && JSON.parse(r.body).text.includes('unknown-target')), 10_000, 'the Slack message of the firing');
    const message = JSON.parse(got.body);
    const texts = mrkdwnTexts(message);
    expect(texts.flatMap(controlSequences)).toEqual([]);
    expect(message.text).toContain('target.name=&lt;!channel&gt; &lt;https://evil.example/v1/access/links/x|Approve here&gt; &amp; co *Rule* all-clear');
    const groupField = message.blocks[1].fields.find((f: { text: string }) => f.text.startsWith('*target.name*'));
    expect(groupField.text.split('\n')).toHaveLength(2);
    expect(allVerbatim(message)).toBe(true);
  });
});
