import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Approvals } from '../../src/access/approvals.ts';
import { openLinkStore, type LinkStore } from '../../src/access/links.ts';
import { Dispatcher } from '../../src/notifiers/dispatcher.ts';
import { openOutbox } from '../../src/notifiers/outbox.ts';
import type { OutboxStore } from '../../src/store/types.ts';
import { accessEnv, actor, type AccessEnv } from './support.ts';

/**
 * A request needing two approvals that got one sends the approvers fresh links at once (the used approve
 * link is gone). When that message cannot be recorded it is not sent, and its claim must be handed back so
 * that the next sweep sends it: otherwise the others never get a usable link (no reminder configured) and
 * the request runs out its window.
 */

let env: AccessEnv;
let links: LinkStore | undefined;
let outbox: OutboxStore | undefined;
afterEach(async () => {
  await links?.close();
  await outbox?.close();
  await env?.close();
});

describe('access review 2: approval progress notifications', () => {
  it('a progress message whose event could not be written is sent by the next sweep', async () => {
    env = await accessEnv();
    links = openLinkStore(env.dataDir, env.store);
    outbox = openOutbox(env.dataDir, env.store);
    const approvals = new Approvals({
      config: { notify: ['approvers'], escalate_to: [], link_ttl: 3_600_000 },
      store: env.store,
      events: env.events,
      links,
      outbox,
      dispatcher: new Dispatcher([], outbox, pino({ level: 'silent' })), // never started: messages stay queued to be read here
      linkBase: 'https://vigil.example:8443',
      log: pino({ level: 'silent' }),
    });
    const queued = async (id: string) => (await outbox!.pending()).map((i) => i.payload as { request_id: string; action: string }).filter((p) => p.request_id === id).map((p) => p.action);

    const req = await env.access.request(actor('alice', ['dev']), { role: 'prod-root', reason: 'INC-94' });
    await approvals.sweep();
    expect(await queued(req.id)).toEqual(['request']);
    await env.access.approve(actor('bob', ['sre-lead']), req.id);

    const append = env.sink.append.bind(env.sink);
    env.sink.append = async (e) => {
      if (e.type === 'access.progress_notified') throw new Error('write failed');
      return append(e);
    };
    await expect(approvals.sweep()).rejects.toThrow('write failed');
    expect(await queued(req.id)).toEqual(['request']);

    env.sink.append = append;
    await approvals.sweep();
    expect(await queued(req.id)).toEqual(['request', 'progress']);
    const progress = env.of('access.progress_notified');
    expect(progress).toHaveLength(1);
    expect(progress[0].details).toMatchObject({ request_id: req.id, approvals: ['bob'] });
  });
});
