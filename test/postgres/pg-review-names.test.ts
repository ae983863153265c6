import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, RawClient, serverStatements, STATEMENT_LOG, answerCodes, type PgWorld } from './helpers.ts';
import { msg, parse, bind, exec, close, query, sync } from './wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * Prepared statements and portals are one namespace on the server, whoever made them: the protocol's
 * Parse/Bind, SQL PREPARE/DECLARE, and their removal by DEALLOCATE/CLOSE/DISCARD. Names are compared
 * on their first 63 bytes (NAMEDATALEN). A record of an Execute must carry the text the server ran,
 * never the text of a statement the name used to mean. The oracle is the server's own statement log.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({}, { pgConf: STATEMENT_LOG });
});
afterAll(async () => {
  await w?.stop();
});

const codes = answerCodes;

/** Run one session (application_name `app`) and return its db.query events once it has ended. */
async function session(app: string, body: (send: (...parts: Buffer[]) => Promise<string>) => Promise<void>): Promise<AuditEvent[]> {
  const c = await RawClient.connect(w, 'pg', [['application_name', app]]);
  await body(async (...parts) => codes(await c.roundTrip(Buffer.concat(parts))));
  c.close();
  const start = await w.tg.waitForEvent((e) => e.type === 'session.start' && (e.details.params as Record<string, string>)?.application_name === app);
  await w.tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
  return w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === start.session_id);
}

/** What the server logged for the Executes of application `app` (`execute NAME: TEXT`). */
async function serverExecuted(app: string, count: number): Promise<string[]> {
  const executed = () => serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).filter((s) => s.kind === 'execute').map((s) => s.sql);
  // The server's log collector writes asynchronously.
  return waitFor(() => (executed().length >= count ? executed() : undefined), 10_000, `${app}: ${count} executes in the server log`);
}

const extendedRuns = (events: AuditEvent[]) => events.filter((e) => e.details.protocol === 'extended').map((e) => [e.outcome, e.details.sql]);

describe('postgres proxy: names follow the server, whoever changed them', () => {
  it('a statement re-created by SQL PREPARE after DEALLOCATE is recorded with the text the server ran', async () => {
    const events = await session('sql-prepare', async (send) => {
      expect(await send(parse('s1', 'SELECT 1 AS innocent'), sync)).toBe('1 Z');
      expect(await send(query('DEALLOCATE s1'))).toBe('C Z');
      expect(await send(query('PREPARE s1 AS SELECT 2 AS what_really_ran'))).toBe('C Z');
      expect(await send(bind('', 's1'), exec(''), sync)).toBe('2 D C Z');
      // DISCARD ALL forgets every statement; a statement PREPAREd by SQL under a mixed-case name.
      expect(await send(parse('s2', 'SELECT 3 AS innocent'), sync)).toBe('1 Z');
      expect(await send(query('DISCARD ALL'))).toBe('C Z');
      expect(await send(query('PREPARE "s2" AS SELECT 4 AS what_really_ran; PREPARE S3 AS SELECT 5 AS five'))).toBe('C C Z');
      expect(await send(bind('', 's2'), exec(''), bind('', 's3'), exec(''), sync)).toBe('2 D C 2 D C Z');
    });
    const server = await serverExecuted('sql-prepare', 3);
    expect(server.join('\n')).toMatch(/what_really_ran[\s\S]*what_really_ran[\s\S]*five/);
    expect(server.join('\n')).not.toMatch(/innocent/);
    const runs = extendedRuns(events);
    expect(runs).toEqual([
      ['success', 'PREPARE s1 AS SELECT 2 AS what_really_ran'],
      ['success', 'PREPARE "s2" AS SELECT 4 AS what_really_ran'],
      ['success', 'PREPARE S3 AS SELECT 5 AS five'],
    ]);
  });

  it('a cursor DECLAREd by SQL after CLOSE of a protocol portal of that name is recorded with its own text', async () => {
    const events = await session('sql-declare', async (send) => {
      expect(await send(query('BEGIN'))).toBe('C Z');
      expect(await send(parse('', 'SELECT 1 AS innocent'), bind('c1', ''), sync)).toBe('1 2 Z');
      expect(await send(query('CLOSE c1'))).toBe('C Z');
      expect(await send(query('DECLARE c1 CURSOR FOR SELECT 2 AS what_really_ran'))).toBe('C Z');
      expect(await send(exec('c1'), sync)).toBe('D C Z');
      expect(await send(query('COMMIT'))).toBe('C Z');
    });
    const server = await serverExecuted('sql-declare', 1);
    expect(server.join('\n')).toMatch(/what_really_ran/);
    expect(extendedRuns(events)).toEqual([['success', 'DECLARE c1 CURSOR FOR SELECT 2 AS what_really_ran']]);
  });

  it('names longer than 63 bytes are the server’s first 63 bytes: Close and Parse of a longer twin change it', async () => {
    const stem = 'n'.repeat(63);
    const events = await session('long-names', async (send) => {
      expect(await send(parse(`${stem}1`, 'SELECT 1 AS innocent'), sync)).toBe('1 Z');
      // The server closes the statement above (same first 63 bytes) and parses a new one under that name.
      expect(await send(close('S', `${stem}2`), parse(`${stem}3`, 'SELECT 3 AS what_really_ran'), sync)).toBe('3 1 Z');
      expect(await send(bind('', `${stem}1`), exec(''), sync)).toBe('2 D C Z');
      // Portals too.
      expect(await send(query('BEGIN'))).toBe('C Z');
      expect(await send(bind(`${stem}a`, `${stem}1`), sync)).toBe('2 Z');
      expect(await send(close('P', `${stem}b`), parse('', 'SELECT 4 AS what_really_ran'), bind(`${stem}c`, ''), sync)).toBe('3 1 2 Z');
      expect(await send(exec(`${stem}a`), sync)).toBe('D C Z');
      expect(await send(query('COMMIT'))).toBe('C Z');
    });
    const server = await serverExecuted('long-names', 2);
    expect(server).toEqual(['SELECT 3 AS what_really_ran', 'SELECT 4 AS what_really_ran']);
    expect(extendedRuns(events)).toEqual([
      ['success', 'SELECT 3 AS what_really_ran'],
      ['success', 'SELECT 4 AS what_really_ran'],
    ]);
  });

  it('the unnamed statement is gone after a failed unnamed Parse or a simple query: a later Bind of it is not given its old text', async () => {
    const events = await session('unnamed-dropped', async (send) => {
      expect(await send(parse('', 'SELECT 1 AS old_text'), sync)).toBe('1 Z');
      expect(await send(parse('', 'SELEC broken'), sync)).toBe('E42601 Z');
      expect(await send(bind('', ''), exec(''), sync)).toBe('E26000 Z');
      expect(await send(parse('', 'SELECT 2 AS old_text'), sync)).toBe('1 Z');
      expect(await send(query('SELECT 3 AS simple'))).toBe('T D C Z');
      expect(await send(bind('', ''), exec(''), sync)).toBe('E26000 Z');
    });
    const failures = events.filter((e) => e.outcome === 'failure').map((e) => [e.details.sqlstate, e.details.sql]);
    expect(failures).toEqual([
      ['42601', 'SELEC broken'],
      ['26000', '(unknown prepared statement)'],
      ['26000', '(unknown prepared statement)'],
    ]);
  });
});
