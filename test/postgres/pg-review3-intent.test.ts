import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, RawClient, serverStatements, STATEMENT_LOG, answerCodes, sessionEvents, type PgWorld } from './helpers.ts';
import { F, cstr } from '../../proxies/postgres/frontend.ts';
import { msg, parse, bind, exec, query, sync } from './wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * With `audit.durability: strict` the intent record (db.query.start, announced before_forward) is all
 * that remains of a statement if the gateway dies while it runs: it must name the text the server runs.
 * A Parse of a prepared statement name that exists fails (42P05), and a Bind to a named portal that
 * exists fails (42P03): the name keeps its old meaning, and an Execute after the next Sync runs the old
 * text. The intent must not be taken from the pending Parse/Bind that the server refuses.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({ audit: { durability: 'strict' } }, { pgConf: STATEMENT_LOG });
});
afterAll(async () => {
  await w?.stop();
});

const codes = answerCodes;

async function session(app: string, body: (send: (...parts: Buffer[]) => Promise<string>) => Promise<void>): Promise<AuditEvent[]> {
  const c = await RawClient.connect(w, 'pg', [['application_name', app]]);
  await body(async (...parts) => codes(await c.pipeline(parts)));
  c.close();
  return sessionEvents(w, app);
}

async function serverExecuted(app: string, count: number): Promise<string[]> {
  const executed = () => serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).filter((s) => s.kind === 'execute').map((s) => s.sql);
  return waitFor(() => (executed().length >= count ? executed() : undefined), 10_000, `${app}: ${count} executes in the server log`);
}

const intents = (events: AuditEvent[]) => events.filter((e) => e.type === 'db.query.start' && e.details.protocol === 'extended').map((e) => e.details.sql);
const runs = (events: AuditEvent[]) => events.filter((e) => e.type === 'db.query' && e.details.protocol === 'extended').map((e) => [e.outcome, e.details.sql]);

describe('postgres proxy, strict durability: the intent names what the server runs', () => {
  it('a Parse of a taken statement name fails; the Execute after the Sync runs the old text, and its intent says so', async () => {
    const app = 'intent-dup-statement';
    const events = await session(app, async (send) => {
      expect(await send(parse('s1', 'SELECT 1 AS old_text'), sync)).toBe('1 Z');
      expect(await send(parse('s1', 'SELECT 2 AS new_text'), sync, bind('', 's1'), exec(''), sync)).toBe('E42P05 Z 2 D C Z');
    });
    const ran = await serverExecuted(app, 1);
    expect(ran).toEqual(['SELECT 1 AS old_text']);
    expect(runs(events)).toEqual([
      ['failure', 'SELECT 2 AS new_text'],
      ['success', 'SELECT 1 AS old_text'],
    ]);
    expect(intents(events)).toEqual(['SELECT 1 AS old_text']);
  });

  it('a Bind to a held cursor\'s name fails; the Execute after the Sync fetches from the cursor, and its intent says so', async () => {
    const app = 'intent-dup-portal';
    const held = 'DECLARE hc CURSOR WITH HOLD FOR SELECT 41 AS held_text';
    const events = await session(app, async (send) => {
      expect(await send(query(held))).toBe('C Z');
      expect(await send(parse('', 'SELECT 42 AS bound_text'), bind('hc', ''), sync, exec('hc'), sync)).toBe('1 E42P03 Z D C Z');
    });
    expect(await serverExecuted(app, 1)).toEqual([held]);
    expect(runs(events)).toEqual([
      ['failure', 'SELECT 42 AS bound_text'],
      ['success', held],
    ]);
    expect(intents(events)).toEqual([held]);
  });

  it('a name dropped (Close, DEALLOCATE, a Sync ending the portal) before the new Parse/Bind: the intent names the new text', async () => {
    const app = 'intent-redefined';
    const events = await session(app, async (send) => {
      expect(await send(parse('s2', 'SELECT 1 AS first_text'), sync)).toBe('1 Z');
      expect(await send(msg(F.Close, Buffer.from('S'), cstr('s2')), parse('s2', 'SELECT 2 AS second_text'), bind('', 's2'), exec(''), sync)).toBe('3 1 2 D C Z');
      expect(await send(query('DEALLOCATE s2'), parse('s2', 'SELECT 3 AS third_text'), bind('', 's2'), exec(''), sync)).toBe('C Z 1 2 D C Z');
      // Not in a block: the portal ends with the first Sync's commit, so the second Bind succeeds.
      expect(await send(bind('p', 's2'), exec('p'), sync, parse('s3', 'SELECT 4 AS fourth_text'), bind('p', 's3'), exec('p'), sync)).toBe('2 D C Z 1 2 D C Z');
    });
    const ran = await serverExecuted(app, 4);
    expect(ran).toEqual(['SELECT 2 AS second_text', 'SELECT 3 AS third_text', 'SELECT 3 AS third_text', 'SELECT 4 AS fourth_text']);
    expect(intents(events)).toEqual(ran);
  });
});
