import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, RawClient, serverStatements, STATEMENT_LOG, answerCodes, sessionEvents, type PgWorld } from './helpers.ts';
import { msg, parse, bind, exec, query, sync } from './wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * A cursor declared WITH HOLD outlives the transaction that commits it (portalmem.c
 * PreCommit_Portals): the client can go on fetching from it, with SQL FETCH or a protocol Execute on its
 * name, once idle. The record of such an Execute must carry the text the server ran (its log says
 * `execute <unnamed>/NAME: DECLARE …`), not "(unknown portal)". A held cursor whose transaction rolled
 * back is gone, and so is its text in the record.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({}, { pgConf: STATEMENT_LOG });
});
afterAll(async () => {
  await w?.stop();
});

const codes = answerCodes;

async function session(app: string, body: (send: (...parts: Buffer[]) => Promise<string>) => Promise<void>): Promise<AuditEvent[]> {
  const c = await RawClient.connect(w, 'pg', [['application_name', app]]);
  await body(async (...parts) => codes(await c.pipeline(parts)));
  c.close();
  return (await sessionEvents(w, app)).filter((e) => e.type === 'db.query');
}

/** What the server logged for the protocol Executes of `app` (`execute [fetch from] <unnamed>/NAME: TEXT`). */
async function serverExecuted(app: string, count: number): Promise<string[]> {
  const executed = () => serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).filter((s) => s.kind === 'execute').map((s) => s.sql);
  return waitFor(() => (executed().length >= count ? executed() : undefined), 10_000, `${app}: ${count} executes in the server log`);
}

const extendedRuns = (events: AuditEvent[]) => events.filter((e) => e.details.protocol === 'extended').map((e) => [e.outcome, e.details.sql, e.details.rows_returned]);

describe('postgres proxy: cursors WITH HOLD outlive their transaction, and so does their text', () => {
  it('an Execute on a held cursor after its transaction committed is recorded with the cursor\'s text', async () => {
    const app = 'hold-cursor';
    const held = 'DECLARE hc CURSOR WITH HOLD FOR SELECT 41 AS secret UNION ALL SELECT 42';
    const inBlock = 'DECLARE h2 NO SCROLL CURSOR WITH HOLD FOR SELECT 43';
    const events = await session(app, async (send) => {
      // Declared in an implicit transaction, then fetched from once idle, across a Sync and a simple query.
      expect(await send(query(held))).toBe('C Z');
      expect(await send(exec('hc', 1), sync)).toBe('D s Z');
      expect(await send(query('SELECT 1'), exec('hc'), sync)).toBe('T D C Z D C Z');
      // Declared in a block that commits.
      for (const sql of ['BEGIN', inBlock, 'COMMIT']) expect(await send(query(sql))).toBe('C Z');
      expect(await send(exec('h2'), sync)).toBe('D C Z');
    });
    expect(await serverExecuted(app, 3)).toEqual([held, held, inBlock]);
    expect(extendedRuns(events)).toEqual([
      ['success', held, 1],
      ['success', held, 1],
      ['success', inBlock, 1],
    ]);
  });

  it('a held cursor whose transaction rolled back is gone: an Execute on its name is not given its text', async () => {
    const app = 'hold-rolled-back';
    const events = await session(app, async (send) => {
      expect(await send(query('BEGIN; DECLARE gone CURSOR WITH HOLD FOR SELECT 1; ROLLBACK'))).toBe('C C C Z');
      expect(await send(exec('gone'), sync)).toBe('E34000 Z');
      expect(await send(query('DECLARE gone2 CURSOR WITH HOLD FOR SELECT 2; SELECT 1/0'))).toBe('C E22012 Z');
      expect(await send(exec('gone2'), sync)).toBe('E34000 Z');
    });
    expect(extendedRuns(events)).toEqual([
      ['failure', '(unknown portal)', 0],
      ['failure', '(unknown portal)', 0],
    ]);
  });

  it('a portal (not held) is gone once its transaction ends, even with more of the pipeline in flight', async () => {
    const app = 'portal-ends-at-sync';
    const events = await session(app, async (send) => {
      // One write: the first Sync commits the implicit transaction, which drops portal p; the second
      // Execute then finds no portal. Its record must not carry the text p used to mean.
      expect(await send(parse('s', 'SELECT generate_series(1, 3) AS was_p'), bind('p', 's'), exec('p', 1), sync, exec('p'), sync)).toBe('1 2 D s Z E34000 Z');
      expect(await send(query('BEGIN'))).toBe('C Z');
      expect(await send(bind('q', 's'), exec('q', 1), sync, query('COMMIT'), exec('q'), sync)).toBe('2 D s Z C Z E34000 Z');
    });
    expect(await serverExecuted(app, 2)).toEqual(['SELECT generate_series(1, 3) AS was_p', 'SELECT generate_series(1, 3) AS was_p']);
    expect(extendedRuns(events)).toEqual([
      ['success', 'SELECT generate_series(1, 3) AS was_p', 1],
      ['failure', '(unknown portal)', 0],
      ['success', 'SELECT generate_series(1, 3) AS was_p', 1],
      ['failure', '(unknown portal)', 0],
    ]);
  });
});
