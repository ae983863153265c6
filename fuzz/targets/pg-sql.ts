import { redactSql, splitQuery, splitStatements, tokenize } from '../../proxies/postgres/sql.ts';
import { decodeParseText, decodeQueryText, LexState } from '../../proxies/postgres/lexmode.ts';
import { encodeMessage } from '../../proxies/postgres/frontend.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, expectErrors, type FuzzTarget } from '../engine/target.ts';

/** SQL text from a client: lexer, statement splitter and redaction under every lexical mode. */
export const target: FuzzTarget = {
  name: 'pg-sql',
  covers: ['proxies/postgres/sql', 'proxies/postgres/lexmode'],
  maxLen: 2048,
  dictionary: ["'", '"', '$$', '$tag$', "E'", "U&'", '--', '/*', '*/', ';', 'BEGIN', 'CREATE FUNCTION', 'password', "PASSWORD 'x'", '\\', 'COPY', 'ALTER ROLE'],
  run(data) {
    const sql = data.toString('utf8');
    for (const scs of [true, false, undefined] as const) {
      expectErrors(() => tokenize(sql, scs ?? true), ProtocolError);
      const split = expectErrors(() => splitQuery(sql, scs), ProtocolError);
      if (split && !split.unsplit) for (const s of split.statements) check(sql.includes(s.trim().slice(0, 16)), 'a split statement is not part of the query');
      expectErrors(() => splitStatements(sql, scs), ProtocolError);
      const r = expectErrors(() => redactSql(sql, /password|secret/i, scs), ProtocolError);
      if (r) check(typeof r.text === 'string', 'redaction returned no text');
    }
    const msg = encodeMessage(0x51, Buffer.concat([data, Buffer.from([0])]));
    for (const enc of ['UTF8', 'SQL_ASCII', 'LATIN1', 'SJIS', 'BIG5', 'GBK', 'EUC_JP']) {
      expectErrors(() => decodeQueryText(msg, enc), ProtocolError);
      expectErrors(() => decodeParseText(msg, sql, enc), ProtocolError);
    }
    const lex = new LexState();
    expectErrors(() => lex.parameterStatus(encodeMessage(0x53, data)), ProtocolError);
    check(lex.scs === true || lex.scs === undefined || lex.scs === false, 'lexical mode out of range');
  },
};
