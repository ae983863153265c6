import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import fs from 'node:fs';
import pg from 'pg';
import { startWorld, RawClient, type PgWorld } from './helpers.ts';
import { F, cstr, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { waitFor } from '../support/tmp.ts';
import { prng } from '../support/fuzz.ts';
import { splitQuery } from '../../proxies/postgres/sql.ts';
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

  it('client_encoding SJIS: a character whose second byte is 0x5C inside an E string is not a backslash', async () => {
    const c = await RawClient.connect(w);
    try {
      const before = w.queries().length;
      await c.roundTrip(encodeMessage(F.Query, cstr("SET client_encoding = 'SJIS'")));
      // E'ソ' then a second statement; ソ is 0x83 0x5C in SJIS: read as bytes, 0x5C would escape the quote.
      const text = Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x83, 0x5c]), Buffer.from("' AS k; SELECT 2 AS n")]);
      const got = await c.roundTrip(encodeMessage(F.Query, Buffer.concat([text, Buffer.from([0])])));
      expect(got.filter((m) => m.type === 'C').map((m) => m.body.toString('latin1'))).toEqual(['SELECT 1\0', 'SELECT 1\0']);
      const events = await waitFor(() => {
        const qs = w.queries().slice(before);
        return qs.length >= 3 ? qs : undefined;
      });
      expect(sqlOf(events)).toEqual(["SET client_encoding = 'SJIS'", "SELECT E'ソ' AS k", 'SELECT 2 AS n']);
    } finally {
      c.close();
    }
  });
});

/**
 * Differential check against PostgreSQL's own lexer: random valid multi-statement texts (every literal
 * style, comments and semicolons inside them) in both modes. PostgreSQL runs the whole text; it also
 * runs each statement the splitter cut out, on its own: the results must be the same, statement by
 * statement. Through the gateway, the records must be exactly those statements.
 */
type Rand = () => number;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
const many = (r: Rand, max: number, f: () => string) => Array.from({ length: Math.floor(r() * (max + 1)) }, f).join('');
const TRICKY = [';', "''", '"', '$', '--', '/*', '*/', ' ', '\n', 'x', 'é', '1'];
const plainBody = (r: Rand, scs: boolean) => many(r, 5, () => pick(r, scs ? [...TRICKY, '\\'] : [...TRICKY, "\\'", '\\\\', '\\;', '\\n']));
const escapedBody = (r: Rand) => many(r, 5, () => pick(r, [...TRICKY, "\\'", '\\\\', '\\;', '\\u00e9', '\\x41', '\\047']));
const GAP = [' ', '\n', ' /* c; */ ', ' /* a /* ; */ b */ ', ' -- c;\n', ' -- c;\r'];

function literal(r: Rand, scs: boolean): string {
  switch (Math.floor(r() * 9)) {
    case 0:
      return `'${plainBody(r, scs)}'`;
    case 1:
      return `E'${escapedBody(r)}'`;
    case 2:
      return `E'${escapedBody(r)}'${pick(r, ['\n', ' -- c;\n  '])}'${escapedBody(r)}'`;
    case 3:
      return `'${plainBody(r, scs)}'\n'${plainBody(r, scs)}'`;
    case 4:
      return `N'${plainBody(r, scs)}'`;
    case 5:
      return scs ? `U&'${many(r, 4, () => pick(r, [';', 'a', '\\0041', "''", '--']))}'` : `'${plainBody(r, scs)}'`;
    case 6:
      return pick(r, [`X'${many(r, 4, () => pick(r, ['0', 'f', 'A']))}'`, `B'${many(r, 4, () => pick(r, ['0', '1']))}'`]);
    case 7: {
      for (;;) {
        const tag = `$${pick(r, ['', 'a', '_x1', 'é'])}$`;
        const body = many(r, 5, () => pick(r, [...TRICKY, '\\', "'", '$b$']));
        if ((body + tag).indexOf(tag) === body.length) return `${tag}${body}${tag}::text`;
      }
    }
    default:
      return pick(r, ['1', '2.5', '3e2']);
  }
}

function validQuery(r: Rand, scs: boolean): string {
  const n = 1 + Math.floor(r() * 4);
  const stmts = Array.from({ length: n }, () => {
    const alias = `"${many(r, 3, () => pick(r, [';', "'", '\\', '""', 'x'])) || 'c'}"`;
    return `SELECT${pick(r, GAP)}${literal(r, scs)}${pick(r, GAP)}AS ${alias}`;
  });
  return stmts.join(pick(r, [';', '; ', ';\n', '; -- c;\n', ';/* ; */'])) + pick(r, ['', ';', ' -- end']);
}

describe('postgres proxy: the splitter agrees with PostgreSQL', () => {
  const CASES = 150;
  for (const scs of [true, false]) {
    it(`random valid texts, standard_conforming_strings = ${scs ? 'on' : 'off'}`, async () => {
      const direct = new pg.Client({ host: '127.0.0.1', port: w.pg.port, user: w.pg.superuser, database: 'app' });
      const through = new pg.Client({
        host: '127.0.0.1',
        port: w.port,
        database: 'pg',
        user: 'alice',
        ssl: { ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: 'localhost' },
      });
      await direct.connect();
      await through.connect();
      try {
        const mode = `SET standard_conforming_strings = ${scs ? 'on' : 'off'}`;
        await direct.query(mode);
        await through.query(mode);
        const before = w.queries().length;
        const expected: string[] = [];
        const rowsOf = (r: pg.QueryResult | pg.QueryResult[]) => (Array.isArray(r) ? r : [r]).map((x) => x.rows);
        for (let seed = 1; seed <= CASES; seed++) {
          const text = validQuery(prng(seed * 7919 + (scs ? 1 : 2)), scs);
          const split = splitQuery(text, scs);
          const whole = rowsOf(await direct.query(text));
          const pieces: unknown[] = [];
          for (const s of split.statements) pieces.push(...rowsOf(await direct.query(s)));
          if (split.unsplit || JSON.stringify(pieces) !== JSON.stringify(whole)) expect({ seed, text, split, pieces }).toEqual({ seed, text, split, pieces: whole });
          expect(rowsOf(await through.query(text))).toEqual(whole);
          expected.push(...split.statements);
        }
        // (The SET's own record may land after `before` was taken.)
        const events = await waitFor(() => {
          const qs = w.queries().slice(before).filter((e) => e.details.sql !== mode);
          return qs.length >= expected.length ? qs : undefined;
        });
        expect(sqlOf(events)).toEqual(expected);
        expect(events.every((e) => e.outcome === 'success' && e.details.unsplit === undefined)).toBe(true);
      } finally {
        await direct.end();
        await through.end();
      }
    });
  }
});
