import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, RawClient, serverStatements, STATEMENT_LOG, answerCodes, type PgWorld } from './helpers.ts';
import { msg, parse, bind, exec, close, sync } from './wire.ts';

/**
 * The record follows the server: prepared statements exist from ParseComplete, portals from
 * BindComplete, and go at CloseComplete. Client sequences the server refuses must not change what
 * vigil believes a later Execute runs. The oracle is the server's own statement log.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({}, { pgConf: STATEMENT_LOG });
});
afterAll(async () => {
  await w?.stop();
});

const codes = answerCodes;

describe('postgres proxy: the record follows the server', () => {
  it('refused Parse/Bind/Close/Execute sequences leave vigil with the server’s names', async () => {
    const c = await RawClient.connect(w);
    const send = async (...parts: Buffer[]) => codes(await c.roundTrip(Buffer.concat([...parts, sync])));

    expect(await send(parse('s1', 'SELECT 1 AS one'))).toBe('1 Z');
    // Duplicate name: refused (42P05); s1 keeps its text, and the Bind/Execute after the error are skipped.
    expect(await send(parse('s1', 'SELECT 2 AS two'), bind('', 's1'), exec(''))).toBe('E42P05 Z');
    expect(await send(bind('', 's1'), exec(''))).toBe('2 D C Z');
    // A Parse error inside a pipeline: the Parse of s3 and the Close of s1 behind it are never done.
    expect(await send(parse('s2', 'SELEC broken'), parse('s3', 'SELECT 3 AS three'), close('S', 's1'))).toBe('E42601 Z');
    expect(await send(bind('p1', 's1'), exec('p1'))).toBe('2 D C Z');
    // s3 was never created: Bind is refused (26000), the Execute of the refused portal is skipped.
    expect(await send(bind('p3', 's3'), exec('p3'))).toBe('E26000 Z');
    // Close of unknown names succeeds (the server says CloseComplete) and changes nothing.
    expect(await send(close('S', 'nope'), close('P', 'nada'))).toBe('3 3 Z');
    // Execute of a portal that does not exist (p3 was refused): 34000.
    expect(await send(exec('p3'))).toBe('E34000 Z');
    // Close s1 for real, then a Bind of it is refused.
    expect(await send(close('S', 's1'))).toBe('3 Z');
    expect(await send(bind('', 's1'), exec(''))).toBe('E26000 Z');
    c.close();

    // The only session of scram_user on this server.
    const end = await w.tg.waitForEvent((e) => e.type === 'session.end');
    const events = w.tg.events.filter((e) => e.type === 'db.query' && e.session_id === end.session_id);
    const executed = serverStatements(w.pg, 'scram_user').filter((s) => s.kind === 'execute');
    // Every statement the server executed, with the text it executed, and nothing else claimed to run.
    expect(executed.map((s) => s.sql)).toEqual(['SELECT 1 AS one', 'SELECT 1 AS one']);
    expect(events.filter((e) => e.outcome === 'success').map((e) => [e.details.sql, e.details.statement])).toEqual([
      ['SELECT 1 AS one', 's1'],
      ['SELECT 1 AS one', 's1'],
    ]);
    const failures = events.filter((e) => e.outcome === 'failure').map((e) => [e.details.sqlstate, e.details.sql]);
    expect(failures).toEqual([
      ['42P05', 'SELECT 2 AS two'],
      ['42601', 'SELEC broken'],
      ['26000', '(unknown prepared statement)'],
      ['34000', '(unknown portal)'],
      ['26000', '(unknown prepared statement)'],
    ]);
  });
});
