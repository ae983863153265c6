import { analyzeSql, resultOwners } from '../../proxies/mysql/sql.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, expectErrors, type FuzzTarget } from '../engine/target.ts';

/**
 * MySQL SQL text: the statement splitter under every sql_mode (backslash escapes, ANSI quotes,
 * versioned comments, compound statements, DELIMITER-free bodies). Statements cover the text in order.
 */
export const target: FuzzTarget = {
  name: 'mysql-sql',
  covers: ['proxies/mysql/sql'],
  maxLen: 2048,
  dictionary: ["'", '"', '`', '\\', '/*!50700 ', '/*!', '*/', '-- ', '#', ';', 'BEGIN', 'END', 'CREATE PROCEDURE p() BEGIN ', 'KILL QUERY 7', 'USE db', 'SET PASSWORD', 'IDENTIFIED BY', 'LOAD DATA LOCAL INFILE', '?'],
  run(data) {
    const sql = data.toString('utf8');
    for (const mode of [{}, { noBackslashEscapes: true }, { ansiQuotes: true }, { noBackslashEscapes: true, ansiQuotes: true }]) {
      const a = expectErrors(() => analyzeSql(sql, (n) => /pass|secret/i.test(n), mode), ProtocolError);
      if (!a) continue;
      let prev = 0;
      for (const s of a.statements) {
        check(s.start >= prev && s.end >= s.start && s.end <= sql.length, `statement bounds out of order: ${s.start}..${s.end} after ${prev}`);
        prev = s.start;
      }
      const owners = resultOwners(a.statements, a.statements.map(() => ({ rows: 1 })));
      check(owners.every((o) => o >= 0 && o < Math.max(1, a.statements.length)), 'result owned by no statement');
    }
  },
};
