import { describe, it, expect } from 'vitest';
import { splitQuery, splitStatements, redactSql } from '../../proxies/postgres/sql.ts';
import { QueryTracker, backendNeedsBody, type QueryRecord } from '../../proxies/postgres/tracker.ts';
import { F, cstr, encodeMessage } from '../../proxies/postgres/frontend.ts';
import { B } from '../../proxies/postgres/backend.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';

/**
 * One test per lexical rule of PostgreSQL's scan.l that decides where a statement ends, in both
 * standard_conforming_strings modes. SQL is written with String.raw so backslashes read as sent.
 */
const ON = true;
const OFF = false;
const sql = String.raw;

describe('splitting follows standard_conforming_strings', () => {
  it("'' strings take backslash escapes only when standard_conforming_strings is off", () => {
    const text = sql`SELECT 'it\'s; here' AS a; SELECT 2`;
    expect(splitStatements(text, OFF)).toEqual([sql`SELECT 'it\'s; here' AS a`, 'SELECT 2']);
    // With it on, the same bytes are a string 'it\' and an unterminated one: the server refuses the text.
    expect(splitQuery(text, ON)).toEqual({ statements: [text], unsplit: true });
    expect(splitStatements(sql`SELECT 'a\'; SELECT 'b\'`, ON)).toEqual([sql`SELECT 'a\'`, sql`SELECT 'b\'`]);
    // E'' strings take them in both modes.
    for (const mode of [ON, OFF]) expect(splitStatements(sql`SELECT E'\';\\'; SELECT e'x\'y'`, mode)).toEqual([sql`SELECT E'\';\\'`, sql`SELECT e'x\'y'`]);
  });

  it("N'' strings follow the mode like '' strings", () => {
    expect(splitStatements(sql`SELECT N'a\'b;c'; SELECT 2`, OFF)).toEqual([sql`SELECT N'a\'b;c'`, 'SELECT 2']);
  });

  it("B'' and X'' strings never take backslash escapes, even when the mode is off", () => {
    expect(splitStatements(sql`SELECT X'1\', 'a\'b'; SELECT b'0\'`, OFF)).toEqual([sql`SELECT X'1\', 'a\'b'`, sql`SELECT b'0\'`]);
  });

  it("U&'' strings take no backslash escapes, and are refused by the server when the mode is off", () => {
    const text = sql`SELECT U&'d\0061t\'; SELECT 2`;
    expect(splitStatements(text, ON)).toEqual([sql`SELECT U&'d\0061t\'`, 'SELECT 2']);
    expect(splitQuery(text, OFF)).toEqual({ statements: [text], unsplit: true });
  });

  it('a literal continued on the next line keeps its escape state (one E string, not two literals)', () => {
    const text = "SELECT E'a'\n  '\\'; SELECT 1; ' AS x; SELECT 2";
    for (const mode of [ON, OFF]) expect(splitStatements(text, mode)).toEqual(["SELECT E'a'\n  '\\'; SELECT 1; ' AS x", 'SELECT 2']);
    // A -- comment may sit before the newline; without a newline there is no continuation.
    expect(splitStatements("SELECT E'a' -- c\n'\\';'; SELECT 2", ON)).toEqual(["SELECT E'a' -- c\n'\\';'", 'SELECT 2']);
    expect(splitStatements("SELECT E'a' '\\'; SELECT 2", ON)).toEqual(["SELECT E'a' '\\'", 'SELECT 2']);
  });

  it('comments: -- ends at \\r as well as \\n, /* */ nest', () => {
    expect(splitStatements('SELECT 1 -- c\r; SELECT 2', ON)).toEqual(['SELECT 1', 'SELECT 2']);
    expect(splitStatements('SELECT /* a /* b; */ c; */ 1; SELECT 2', ON)).toEqual(['SELECT /* a /* b; */ c; */ 1', 'SELECT 2']);
  });

  it('dollar quotes: tag rules, and a number never swallows the $ that opens one', () => {
    expect(splitStatements('SELECT 1$a$;$a$; SELECT $_1$ ; $x$ ; $_1$; SELECT $é$;$é$', ON)).toEqual(['SELECT 1$a$;$a$', 'SELECT $_1$ ; $x$ ; $_1$', 'SELECT $é$;$é$']);
    // `x$a$` is one identifier (`$` continues identifiers), and `$1` a parameter: no dollar quote.
    expect(splitStatements('SELECT x$a$; SELECT $1$b; SELECT 3', ON)).toEqual(['SELECT x$a$', 'SELECT $1$b', 'SELECT 3']);
    // Backslashes mean nothing in a dollar quote, in either mode.
    expect(splitStatements("SELECT $q$\\'$q$; SELECT 'x'", OFF)).toEqual(["SELECT $q$\\'$q$", "SELECT 'x'"]);
  });

  it('quoted identifiers take no backslash escapes, in either mode', () => {
    expect(splitStatements(sql`SELECT "x\", 'y\'' ; SELECT 2`, OFF)).toEqual([sql`SELECT "x\", 'y\''`, 'SELECT 2']);
  });

});

describe('when unsure, the whole text is one statement, marked unsplit', () => {
  const cases: [string, string][] = [
    ['an unterminated string', "SELECT 1; SELECT 'abc; SELECT 2"],
    ['an unterminated E string', "SELECT 1; SELECT E'abc\\'; SELECT 2"],
    ['an unterminated quoted identifier', 'SELECT 1; SELECT "abc; SELECT 2'],
    ['an unterminated dollar quote', 'SELECT 1; SELECT $t$abc; SELECT 2'],
    ['an unterminated comment', 'SELECT 1; /* SELECT 2; SELECT 3'],
    ['an unterminated nested comment', 'SELECT 1; /* /* */ SELECT 2; SELECT 3'],
    ['a zero-length quoted identifier', 'SELECT ""; SELECT 2'],
    ['an invalid Unicode escape', "SELECT E'\\u12'; SELECT 2"],
  ];
  for (const [what, text] of cases) {
    it(what, () => {
      expect(splitQuery(text, ON)).toEqual({ statements: [text], unsplit: true });
      expect(splitStatements(text, OFF)).toEqual([text]);
    });
  }

  it('the mode is unknown and the two modes split differently', () => {
    const text = sql`SELECT 'a\'; SELECT 'b'`;
    expect(splitQuery(text, undefined)).toEqual({ statements: [text], unsplit: true });
    // Where both modes agree, the mode does not matter.
    expect(splitQuery(sql`SELECT E'a\'b'; SELECT $$\$$`, undefined)).toEqual({ statements: [sql`SELECT E'a\'b'`, sql`SELECT $$\$$`], unsplit: false });
  });
});

describe('redaction in both modes', () => {
  const names = compileSecretPattern(['pass(word)?', 'secret', 'token']);

  it('masks the whole literal when standard_conforming_strings is off', () => {
    expect(redactSql(sql`UPDATE t SET token = 'sec\'ret' WHERE id = 1`, names, OFF).text).toBe("UPDATE t SET token = '***' WHERE id = 1");
    expect(redactSql(sql`ALTER ROLE bob PASSWORD 'p\'w; x'`, names, OFF).text).toBe("ALTER ROLE bob PASSWORD '***'");
    expect(redactSql(sql`UPDATE t SET token = 'a\', name = 'b'`, names, ON).text).toBe("UPDATE t SET token = '***', name = 'b'");
  });

  it('masks a continued E string as one literal', () => {
    expect(redactSql("UPDATE t SET token = E'a'\n'\\'b'", names, ON).text).toBe("UPDATE t SET token = '***'");
  });

  it('masks what either mode would call the secret when the mode is unknown', () => {
    expect(redactSql(sql`UPDATE t SET token = 'p\'q', note = 'n'`, names, undefined).text).toBe("UPDATE t SET token = '***', note = 'n'");
  });
});

describe('QueryTracker: the mode follows the server', () => {
  const msg = (type: number, ...parts: Buffer[]) => encodeMessage(type, Buffer.concat(parts));
  const status = (name: string, value: string) => msg(B.ParameterStatus, cstr(name), cstr(value));
  const query = (text: string) => msg(F.Query, cstr(text));
  const complete = (tag: string) => msg(B.CommandComplete, cstr(tag));
  const ready = msg(B.ReadyForQuery, Buffer.from('I'));

  function tracker() {
    const out: QueryRecord[] = [];
    const t = new QueryTracker({ redact: undefined, onRecord: (r) => out.push(r) });
    const front = (m: Buffer) => {
      t.frontend(m[0], m, m.length - 1, 0);
      t.forwarded(false); // as the connection does once the chunk went to the server
    };
    const back = (m: Buffer) => t.backend(m[0], backendNeedsBody(m[0]) ? m : undefined, m.length - 1, 1);
    return { t, out, front, back };
  }
  const text = sql`SELECT 'it\'s; here' AS a; SELECT 2`;

  it('SET standard_conforming_strings = off, reported by the server, switches the lexer', () => {
    const { out, front, back } = tracker();
    front(query('SET standard_conforming_strings = off'));
    [complete('SET'), status('standard_conforming_strings', 'off'), ready].forEach(back);
    front(query(text));
    [complete('SELECT 1'), complete('SELECT 1'), ready].forEach(back);
    expect(out.map((r) => [r.sql, r.unsplit])).toEqual([
      ['SET standard_conforming_strings = off', undefined],
      [sql`SELECT 'it\'s; here' AS a`, undefined],
      ['SELECT 2', undefined],
    ]);
  });

  it('the login report (startup options or server config) sets the mode from the start', () => {
    const { out, front, back } = tracker();
    back(status('standard_conforming_strings', 'off'));
    front(query(text));
    [complete('SELECT 1'), complete('SELECT 1'), ready].forEach(back);
    expect(out.map((r) => r.sql)).toEqual([sql`SELECT 'it\'s; here' AS a`, 'SELECT 2']);
  });

  it('a query sent before the previous one settled is recorded whole when the modes disagree on it', () => {
    const { out, front, back } = tracker();
    front(query('SET standard_conforming_strings = off'));
    front(query(text)); // pipelined: the server lexes it after the SET, which is not reported yet
    [complete('SET'), status('standard_conforming_strings', 'off'), ready].forEach(back);
    [complete('SELECT 1'), complete('SELECT 1'), ready].forEach(back);
    expect(out.slice(1).map((r) => [r.sql, r.unsplit])).toEqual([
      [text, true],
      [text, true],
    ]);
  });

  it('client_encoding SJIS: a multi-byte character whose second byte is 0x5C is not a backslash', () => {
    const { out, front, back } = tracker();
    back(status('client_encoding', 'SJIS'));
    // E'ソ' then a statement: in SJIS, ソ is 0x83 0x5C. Read as bytes, 0x5C would escape the closing quote.
    const bytes = Buffer.concat([Buffer.from("SELECT E'"), Buffer.from([0x83, 0x5c]), Buffer.from("'; SELECT 2")]);
    front(msg(F.Query, bytes, Buffer.from([0])));
    [complete('SELECT 1'), complete('SELECT 1'), ready].forEach(back);
    expect(out.map((r) => [r.sql, r.unsplit])).toEqual([
      ["SELECT E'ソ'", undefined],
      ['SELECT 2', undefined],
    ]);
  });

  it('client_encoding SJIS, mode off: a prepared statement is lexed in the client encoding, so its secret is masked', () => {
    const out: QueryRecord[] = [];
    const t = new QueryTracker({ redact: compileSecretPattern(['token']), onRecord: (r) => out.push(r) });
    const back = (m: Buffer) => t.backend(m[0], backendNeedsBody(m[0]) ? m : undefined, m.length - 1, 1);
    back(status('client_encoding', 'SJIS'));
    back(status('standard_conforming_strings', 'off'));
    // 'ソ' ends in 0x5C: read as a backslash it would escape the quote, and 'secret' would look like SQL.
    const text = Buffer.concat([Buffer.from("UPDATE t SET a = '"), Buffer.from([0x83, 0x5c]), Buffer.from("', token = 'secret'")]);
    const parse = msg(F.Parse, cstr(''), text, Buffer.from([0]), Buffer.from([0, 0]));
    const bind = msg(F.Bind, cstr(''), cstr(''), Buffer.from([0, 0, 0, 0, 0, 0]));
    const exec = msg(F.Execute, cstr(''), Buffer.from([0, 0, 0, 0]));
    for (const m of [parse, bind, exec, msg(F.Sync)]) t.frontend(m[0], m, m.length - 1, 0);
    [msg(B.ParseComplete), msg(B.BindComplete), complete('UPDATE 1'), ready].forEach(back);
    expect(out.map((r) => r.sql)).toEqual(["UPDATE t SET a = 'ソ', token = '***'"]);
  });
});
