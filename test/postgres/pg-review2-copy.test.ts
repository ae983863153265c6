import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, RawClient, serverStatements, STATEMENT_LOG, answerCodes, sessionEvents, type PgWorld } from './helpers.ts';
import { F, cstr } from '../../proxies/postgres/frontend.ts';
import { msg, parse, bind, exec, query, copyData, copyDone, flush, sync } from './wire.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * COPY run through the extended protocol. While the server is in copy-in mode it ignores Sync and Flush
 * (copyfromparse.c CopyGetData), so libpq, which sends Sync right after Execute, sends a second one after
 * CopyDone (fe-exec.c PQputCopyEnd): one ReadyForQuery answers two Syncs. Every later statement must
 * still be recorded with its own text and result, as the server's statement log has it.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({}, { pgConf: STATEMENT_LOG });
});
afterAll(async () => {
  await w?.stop();
});

const describePortal = (portal: string) => msg(F.Describe, Buffer.from('P'), cstr(portal));
const copyFail = (why: string) => msg(F.CopyFail, cstr(why));
const codes = answerCodes;

async function session(app: string, body: (c: RawClient, send: (...parts: Buffer[]) => Promise<string>) => Promise<void>): Promise<AuditEvent[]> {
  const c = await RawClient.connect(w, 'pg', [['application_name', app]]);
  await body(c, async (...parts) => codes(await c.roundTrip(Buffer.concat(parts))));
  c.close();
  return (await sessionEvents(w, app)).filter((e) => e.type === 'db.query');
}

const logged = (app: string) => serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).map((s) => s.sql);
const loggedUpTo = (app: string, last: string) => waitFor(() => (logged(app).includes(last) ? logged(app) : undefined), 10_000, `server log of ${app}`);
const runs = (events: AuditEvent[]) => events.map((e) => [e.outcome, e.details.sql, e.details.command ?? null]);

describe('postgres proxy: COPY in the extended protocol', () => {
  it("libpq's two Syncs around COPY FROM STDIN: later statements keep their own text and result", async () => {
    const app = 'copy-ext';
    const events = await session(app, async (c, send) => {
      expect(await send(query('CREATE TABLE copy_ext (id int, note text)'))).toBe('C Z');
      // PQexecParams('COPY … FROM STDIN'): Parse/Bind/Describe/Execute/Sync, then the data, CopyDone, Sync.
      const from = c.messages.length;
      c.socket.write(Buffer.concat([parse('', 'COPY copy_ext FROM STDIN'), bind('', ''), describePortal(''), exec(''), sync]));
      await c.until((m) => m.type === 'G', from);
      expect(await send(copyData('1\tone\n2\ttwo\n'), flush, copyDone, sync)).toBe('C Z');
      expect(codes(c.messages.slice(from))).toBe('1 2 n G C Z');
      expect(await send(query("SELECT 'after copy' AS a"))).toBe('T D C Z');
      // A COPY that the client abandons (CopyFail): the server skips to the Sync sent after it.
      const failFrom = c.messages.length;
      c.socket.write(Buffer.concat([parse('', 'COPY copy_ext FROM STDIN'), bind('', ''), exec(''), sync]));
      await c.until((m) => m.type === 'G', failFrom);
      expect(await send(copyData('3\tthree\n'), copyFail('changed my mind'), sync)).toBe('E57014 Z');
      expect(await send(query('DELETE FROM copy_ext WHERE id = 1'))).toBe('C Z');
      expect(await send(parse('', 'SELECT count(*) FROM copy_ext'), bind('', ''), exec(''), sync)).toBe('1 2 D C Z');
    });
    expect(logged(app)).toEqual(await loggedUpTo(app, 'SELECT count(*) FROM copy_ext'));
    expect(runs(events)).toEqual([
      ['success', 'CREATE TABLE copy_ext (id int, note text)', 'CREATE'],
      ['success', 'COPY copy_ext FROM STDIN', 'COPY'],
      ['success', "SELECT 'after copy' AS a", 'SELECT'],
      ['failure', 'COPY copy_ext FROM STDIN', null],
      ['success', 'DELETE FROM copy_ext WHERE id = 1', 'DELETE'],
      ['success', 'SELECT count(*) FROM copy_ext', 'SELECT'],
    ]);
    expect(events[1].details).toMatchObject({ rows_returned: 0, copy: { direction: 'in', rows: 2 } });
    expect(events[4].details).toMatchObject({ rows_affected: 1 });
    expect(events[5].details).toMatchObject({ rows_returned: 1 });
  });

  it('a Sync sent inside a simple-query COPY FROM STDIN is ignored by the server and by the record', async () => {
    const app = 'copy-simple-sync';
    const events = await session(app, async (c, send) => {
      expect(await send(query('CREATE TABLE copy_sync (id int)'))).toBe('C Z');
      const from = c.messages.length;
      c.socket.write(query('COPY copy_sync FROM STDIN'));
      await c.until((m) => m.type === 'G', from);
      expect(await send(copyData('1\n'), sync, sync, copyData('2\n'), copyDone)).toBe('C Z');
      expect(await send(query('DROP TABLE copy_sync'))).toBe('C Z');
    });
    await loggedUpTo(app, 'DROP TABLE copy_sync');
    expect(runs(events)).toEqual([
      ['success', 'CREATE TABLE copy_sync (id int)', 'CREATE'],
      ['success', 'COPY copy_sync FROM STDIN', 'COPY'],
      ['success', 'DROP TABLE copy_sync', 'DROP'],
    ]);
  });
});
