import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type PgWorld } from './helpers.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Through the gateway, against a real PostgreSQL with log_statement = all: with
 * standard_conforming_strings off, a multi-statement query with backslash-escaped quotes is recorded as
 * the statements the server ran, and their texts are exactly the pieces of the text the server logged.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
  // log_statement for the gateway's backend role only (set by the superuser; the role cannot).
  w.pg.psql("ALTER ROLE scram_user SET log_statement = 'all'");
  w.pg.psql('CREATE TABLE lex (id int, v text); ALTER TABLE lex OWNER TO scram_user');
});
afterAll(async () => {
  await w?.stop();
});

/** The texts of the simple queries PostgreSQL logged (one line each here). */
const loggedStatements = () => [...w.pg.logs().matchAll(/LOG: {2}statement: (.*)$/gm)].map((m) => m[1]);

/** `pieces` are substrings of `text`, in order, and what is left is only `;` and whitespace. */
function rest(text: string, pieces: string[]): string {
  let left = '';
  let at = 0;
  for (const p of pieces) {
    const found = text.indexOf(p, at);
    if (found < 0) return `«${p}» is not in the text after offset ${at}`;
    left += text.slice(at, found);
    at = found + p.length;
  }
  return left + text.slice(at);
}

const sqlOf = (events: AuditEvent[]) => events.map((e) => e.details.sql as string);

describe('postgres proxy: the lexer follows the server (standard_conforming_strings)', () => {
  // In the off mode: 'it\'s; here' is one literal holding a semicolon, 'a\\' holds one backslash.
  const multi = String.raw`INSERT INTO lex VALUES (1, 'it\'s; here'); SELECT 'a\\' AS b; SELECT 3 AS "x;y"`;
  const expected = [String.raw`INSERT INTO lex VALUES (1, 'it\'s; here')`, String.raw`SELECT 'a\\' AS b`, 'SELECT 3 AS "x;y"'];

  it('SET standard_conforming_strings = off, then a multi-statement query with backslash escapes', async () => {
    const before = w.queries().length;
    const r = await w.psql(['-qAt', '-c', 'SET standard_conforming_strings = off', '-c', multi]);
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/ERROR/); // only the server's "nonstandard use of \' in a string literal" warnings
    expect(r.stdout).toBe('a\\\n3\n');
    // The server ran the INSERT with the literal as the off mode reads it.
    expect(w.pg.psql('SELECT v FROM lex WHERE id = 1').trim()).toBe("it's; here");

    const events = await waitFor(() => {
      const qs = w.queries().slice(before);
      return qs.length >= 4 ? qs : undefined;
    });
    expect(sqlOf(events)).toEqual(['SET standard_conforming_strings = off', ...expected]);
    expect(events.slice(1).map((e) => [e.outcome, e.details.command, e.details.unsplit])).toEqual([
      ['success', 'INSERT', undefined],
      ['success', 'SELECT', undefined],
      ['success', 'SELECT', undefined],
    ]);

    // The server's log has the query text as received; the records are pieces of it, in order, and
    // nothing but the separating semicolons and spaces is left out.
    const logged = loggedStatements();
    expect(logged).toContain(multi);
    expect(rest(multi, sqlOf(events.slice(1)))).toMatch(/^[;\s]*$/);
  });

  it('standard_conforming_strings = off from the startup options (login ParameterStatus)', async () => {
    const before = w.queries().length;
    const text = String.raw`INSERT INTO lex VALUES (2, 'x\';y'); SELECT 2`;
    const r = await w.psql(['-qAt', '-c', text], { env: { PGOPTIONS: '-c standard_conforming_strings=off' } });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('2\n');
    expect(w.pg.psql('SELECT v FROM lex WHERE id = 2').trim()).toBe("x';y");
    const events = await waitFor(() => {
      const qs = w.queries().slice(before);
      return qs.length >= 2 ? qs : undefined;
    });
    expect(sqlOf(events)).toEqual([String.raw`INSERT INTO lex VALUES (2, 'x\';y')`, 'SELECT 2']);
    expect(loggedStatements()).toContain(text);
  });
});
