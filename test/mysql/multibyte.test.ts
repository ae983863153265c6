import { describe, it, expect } from 'vitest';
import { analyzeSql } from '../../proxies/mysql/sql.ts';
import { hasAsciiTrail, multibyteReader, statementText } from '../../proxies/mysql/commands.ts';

/**
 * The lexer's reading of multi-byte characters (pure): in gbk/big5/sjis/cp932 a lead byte and an ASCII
 * trail byte are one character to the server, so a 0x5C trail is no backslash escape and a 0x60 trail
 * no backtick. Texts as the proxy gives them: escaped (`\xHH` per byte >= 0x80).
 */
const none = () => false;
const bytes = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

describe('mysql lexer and multi-byte character sets', () => {
  const trap = bytes("SELECT '", [0xbf, 0x5c], "'; KILL 1234; -- '");
  const { sql } = statementText(trap, true);

  it('gbk: the literal ends at the second quote, so the KILL is a statement of its own', () => {
    expect(hasAsciiTrail(trap)).toBe(true);
    const a = analyzeSql(sql, none, {}, [multibyteReader(trap, 'gbk')]);
    // The trailing `-- '` after the last `;` is a statement of its own to the server (it answers it an OK).
    expect(a.statements.map((s) => [s.keyword, !!s.commentOnly])).toEqual([['SELECT', false], ['KILL', false], ['', true]]);
    expect(a.statements[1]!.kill).toEqual({ query: false, id: 1234 });
    // A byte reader sees one SELECT: what vigil saw before it knew the character set.
    expect(analyzeSql(sql, none).statements.map((s) => s.keyword)).toEqual(['SELECT']);
  });

  it('big5 and sjis/cp932 group their own ranges; 0xBF is no sjis lead, so there the backslash escapes', () => {
    expect(analyzeSql(sql, none, {}, [multibyteReader(trap, 'big5')]).statements.filter((s) => !s.commentOnly)).toHaveLength(2);
    expect(analyzeSql(sql, none, {}, [multibyteReader(trap, 'cp932')]).statements).toHaveLength(1);
    const sjis = bytes("SELECT '", [0x95, 0x5c], "'; KILL 7");
    expect(analyzeSql(statementText(sjis, true).sql, none, {}, [multibyteReader(sjis, 'sjis')]).statements.map((s) => s.keyword)).toEqual(['SELECT', 'KILL']);
  });

  it('a backslash escape skips one byte only, as the server\'s: the trail byte then escapes the quote', () => {
    const b = bytes("SELECT '\\", [0xbf, 0x5c], "'; KILL 1; -- '");
    expect(analyzeSql(statementText(b, true).sql, none, {}, [multibyteReader(b, 'gbk')]).statements).toHaveLength(1);
  });

  it('a 0x60 trail is no backtick, inside or outside an identifier', () => {
    const b = bytes('SELECT `a', [0x81, 0x60], '`; KILL 3');
    expect(analyzeSql(statementText(b, true).sql, none, {}, [multibyteReader(b, 'gbk')]).statements.map((s) => s.keyword)).toEqual(['SELECT', 'KILL']);
    expect(analyzeSql(statementText(b, true).sql, none).statements).toHaveLength(1);
  });

  it('unknown character set: readings that disagree leave the text whole, with the KILL found in any of them', () => {
    const a = analyzeSql(sql, none, {}, [undefined, multibyteReader(trap, 'gbk'), multibyteReader(trap, 'big5'), multibyteReader(trap, 'sjis')]);
    expect(a.statements).toHaveLength(1);
    expect(a.statements[0]).toMatchObject({ unsplit: true, restricted: ['KILL'] });
  });

  it('a literal `\\xBF` the client typed is not taken for an escaped byte', () => {
    const b = bytes("SELECT '\\xBF\\'; KILL 1; -- '", [0xe9]);
    expect(hasAsciiTrail(b)).toBe(false);
    expect(analyzeSql(statementText(b, true).sql, none, {}, [multibyteReader(b, 'gbk')]).statements).toHaveLength(1);
  });
});
