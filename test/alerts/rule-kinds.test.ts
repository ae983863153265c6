import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';
import { parseConfig } from '../../app/config.ts';
import type { AuditEvent, EventInput } from '../../src/events/envelope.ts';

/**
 * The rule kinds beyond counting: conditions on details values ("a query returned more than 100k rows"),
 * access outside a grant, sessions open too long, and the first access of a user to a target in 30 days
 * (remembered across a gateway restart). Events go through the gateway's real bus and audit log.
 */
const T = Date.parse('2026-10-01T08:00:00.000Z');
const DAY = 86_400_000;
const client = { ip: '192.0.2.9', port: 40001 };
const prodPg = { name: 'prod-pg', protocol: 'postgres', host: '127.0.0.1', database: 'app' };
const rules = [
  { name: 'big-result', match: { type: 'db.query', details: { rows_returned: { gt: 100000 } } } },
  { name: 'copy-out', match: { type: 'db.query', details: { command_tag: { in: ['COPY', 'copy'] }, sql: { regex: '\\bto\\s+stdout\\b' } } } },
  { name: 'ddl-outside-grant', match: { type: 'db.query', statement_class: 'ddl', via_grant: false } },
  { name: 'long-session', match: { type: 'session.start', user: 'lena' }, longer_than: '300ms' },
  { name: 'first-access', match: { type: 'session.start', user: ['alice', 'bob', 'carol'] }, group_by: ['actor.user', 'target.name'], first_in: '30d' },
];
const config = {
  ssh: { enabled: false },
  mysql: { enabled: false },
  targets: [{ name: 'prod-pg', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', user: 'app' }],
  alerts: rules,
};

const base = tempDir();
let tg: TestGateway;
beforeAll(async () => {
  tg = await startTestGateway(config, base);
});
afterAll(() => tg?.stop());

let sid = 0;
async function emit(type: EventInput['type'], fields: Partial<EventInput> & { at?: number }): Promise<AuditEvent> {
  const { at, ...rest } = fields;
  return tg.gw.services.events.emit({ type, outcome: 'success', actor: { user: 'dana', roles: ['dba'] }, source: client, target: prodPg, time: new Date(at ?? T), ...rest });
}
const start = (user: string, at: number, grantIds: string[] = []) =>
  emit('session.start', { at, actor: { user, roles: ['dba'] }, session_id: `s-${user}-${sid++}`, details: { grant_ids: grantIds } });
const firings = (rule: string) => tg.events.filter((e) => e.type === 'alert.fired' && e.details.rule === rule);
const settle = () => tg.gw.services.alerts!.engine.idle();

describe('alert rule kinds', () => {
  it('details conditions compare numbers, lists and text', async () => {
    await emit('db.query', { details: { sql: 'select * from t', rows_returned: 100000 } });
    await emit('db.query', { details: { sql: 'select * from t' } });
    await emit('db.query', { details: { sql: 'select * from t', rows_returned: 'many' } });
    const big = await emit('db.query', { details: { sql: 'select * from t', rows_returned: 100001 } });
    await emit('db.query', { details: { sql: 'COPY t TO STDOUT', command_tag: 'SELECT' } });
    await emit('db.query', { details: { sql: 'copy t from stdin', command_tag: 'COPY' } });
    const copy = await emit('db.query', { details: { sql: 'copy t to   stdout', command_tag: 'COPY' } });
    await settle();
    expect(firings('big-result').map((e) => e.details.event_ids)).toEqual([[big.id]]);
    expect(firings('copy-out').map((e) => e.details.event_ids)).toEqual([[copy.id]]);
  });

  it('via_grant: DDL in a session admitted by a standing role fires, under a JIT grant it does not', async () => {
    const granted = await start('gina', T, ['grant-1']);
    const standing = await start('sam', T);
    await emit('db.query', { session_id: granted.session_id, details: { sql: 'drop table orders' } });
    const hit = await emit('db.query', { session_id: standing.session_id, details: { sql: 'drop table orders' } });
    await emit('db.query', { session_id: standing.session_id, details: { sql: 'select 1' } });
    // A session whose start the engine never saw counts as standing access.
    const unseen = await emit('db.query', { session_id: 'never-started', details: { sql: 'alter table orders add c int' } });
    await settle();
    expect(firings('ddl-outside-grant').map((e) => e.details.event_ids)).toEqual([[hit.id], [unseen.id]]);
  });

  it('longer_than fires once for a session still open past the limit, never for one that ended', async () => {
    const open = await start('lena', Date.now());
    const short = await start('lena', Date.now());
    await emit('session.end', { actor: { user: 'lena', roles: ['dba'] }, session_id: short.session_id, details: { reason: 'client_closed' } });
    const deadline = Date.now() + 10_000;
    while (firings('long-session').length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // Several more checks of the timer pass: still one firing, and none for the session that ended.
    await new Promise((r) => setTimeout(r, 1200));
    expect(firings('long-session').map((e) => e.details.event_ids)).toEqual([[open.id]]);
    expect(firings('long-session')[0].details).toMatchObject({ window_ms: 300 });
  });

  it('first_in: first access of a user to a target in 30 days, remembered across a restart', async () => {
    const a1 = await start('alice', T);
    await start('alice', T + DAY);
    const b1 = await start('bob', T + DAY);
    await start('alice', T + 31 * DAY - 1); // 30 days minus 1 ms after the previous access
    const a2 = await start('alice', T + 61 * DAY - 1); // exactly 30 days after it
    await settle();
    expect(firings('first-access').map((e) => e.details.event_ids)).toEqual([[a1.id], [b1.id], [a2.id]]);
    expect(firings('first-access')[0].details.group).toEqual({ 'actor.user': 'alice', 'target.name': 'prod-pg' });

    await tg.stop();
    tg = await startTestGateway(config, base);
    await start('alice', T + 70 * DAY); // 9 days after her last access before the restart: not a first
    const c1 = await start('carol', T + 70 * DAY);
    await settle();
    expect(firings('first-access').map((e) => e.details.event_ids)).toEqual([[c1.id]]);
  });

  it('config refuses rule kinds that cannot work', () => {
    const parse = (alert: Record<string, unknown>) => parseConfig({ data_dir: tempDir(), alerts: [{ name: 'x', ...alert }] }, tempDir());
    expect(() => parse({ match: { type: 'db.query' }, longer_than: '2h' })).toThrow(/longer_than watches sessions/);
    expect(() => parse({ match: { type: 'session.start' }, first_in: '30d' })).toThrow(/first_in needs group_by/);
    expect(() => parse({ match: { type: 'session.start' }, group_by: ['actor.user'], first_in: '30d', threshold: 3 })).toThrow(/threshold must stay 1/);
    expect(() => parse({ match: { type: 'db.query', details: { rows: {} } } })).toThrow(/details condition/);
    expect(() => parse({ match: { type: 'db.query', details: { rows: { regex: '(' } } } })).toThrow(/regular expression/);
  });
});
