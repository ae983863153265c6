import { describe, it, expect } from 'vitest';
import { analyzeSql, resultOwners, type SqlMode } from '../../proxies/mysql/sql.ts';

// Statement boundaries of multi-statement text, as the server draws them (issue #13: text is never cut or
// invented). `texts` shows each recorded statement; an uncertain split is one statement marked unsplit.
const secret = (n: string) => /pass(word)?|secret/i.test(n);
const DEFAULT_MODE: SqlMode = { noBackslashEscapes: false, ansiQuotes: false };
const split = (sql: string, mode: SqlMode = DEFAULT_MODE) => analyzeSql(sql, secret, mode).statements;
const texts = (sql: string, mode?: SqlMode) => split(sql, mode).map((s) => (s.unsplit ? `UNSPLIT: ${s.text}` : s.text));

describe('compound statements end at their matching END', () => {
  it('records a procedure body whole, the next statement apart', () => {
    const proc = 'CREATE PROCEDURE p() BEGIN SELECT 1; DELETE FROM t; END';
    expect(texts(`${proc}; SELECT 2`)).toEqual([proc, 'SELECT 2']);
  });

  it('records BEGIN NOT ATOMIC with nested loops, labels, IF and CASE expressions whole', () => {
    const block =
      'BEGIN NOT ATOMIC DECLARE x INT DEFAULT 0; outer_loop: WHILE x < 3 DO SET x = x + 1; IF x = 2 THEN ITERATE outer_loop; ' +
      'ELSEIF x = 9 THEN LEAVE outer_loop; ELSE SELECT CASE WHEN x > 1 THEN 1 ELSE 0 END AS c; END IF; END WHILE outer_loop; END';
    const s = split(`${block};\nSELECT 3`);
    expect(s.map((x) => x.text)).toEqual([block, 'SELECT 3']);
    expect(s[0]!.compound).toBe(true);
    expect(s[1]!.compound).toBeUndefined();
  });

  it('knows the routine header: OR REPLACE, DEFINER, IF NOT EXISTS, RETURNS … CHARACTER SET, characteristics, COMMENT', () => {
    const fn =
      "CREATE OR REPLACE DEFINER=`root`@`localhost` FUNCTION IF NOT EXISTS db.f(a INT) RETURNS VARCHAR(10) CHARACTER SET utf8mb4 " +
      "NOT DETERMINISTIC READS SQL DATA SQL SECURITY INVOKER COMMENT 'a;b' BEGIN DECLARE r VARCHAR(10); SET r = 'x;'; RETURN r; END";
    expect(texts(`${fn}; SELECT f(1)`)).toEqual([fn, 'SELECT f(1)']);
    // A body that is one simple statement ends at the first `;`.
    expect(texts('CREATE FUNCTION g(a INT) RETURNS INT DETERMINISTIC RETURN a + 1; SELECT g(1)')).toEqual(['CREATE FUNCTION g(a INT) RETURNS INT DETERMINISTIC RETURN a + 1', 'SELECT g(1)']);
    expect(texts('CREATE DEFINER = event@localhost PROCEDURE q() BEGIN SELECT 1; END; SELECT 2')).toEqual(['CREATE DEFINER = event@localhost PROCEDURE q() BEGIN SELECT 1; END', 'SELECT 2']);
  });

  it('records trigger and event bodies whole (a column named `end` is no END)', () => {
    const trg = 'CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW FOLLOWS other BEGIN SET NEW.end = 1; IF NEW.a THEN SET NEW.b = 2; END IF; END';
    expect(texts(`${trg};SELECT 1`)).toEqual([trg, 'SELECT 1']);
    const ev = 'CREATE EVENT IF NOT EXISTS e ON SCHEDULE EVERY 1 HOUR DO BEGIN DELETE FROM t; INSERT INTO log SELECT start, end FROM t; END';
    expect(texts(`${ev}; SELECT 1`)).toEqual([ev, 'SELECT 1']);
    const alter = 'ALTER EVENT e DO BEGIN DELETE FROM t; END';
    expect(texts(`${alter}; SELECT 1`)).toEqual([alter, 'SELECT 1']);
  });

  it('records MariaDB compound statements outside programs: IF, CASE, LOOP, REPEAT, WHILE, FOR', () => {
    for (const c of [
      'IF @x THEN SELECT 1; ELSE SELECT 2; END IF',
      'CASE @x WHEN 1 THEN SELECT 1; ELSE SELECT CASE @y WHEN 1 THEN 2 END; END CASE',
      'l: LOOP SELECT 1; LEAVE l; END LOOP l',
      'REPEAT SET @x = @x + 1; UNTIL @x > 3 END REPEAT',
      'WHILE @x < 3 DO SET @x = @x + 1; END WHILE',
      'FOR i IN 1..3 DO SELECT i; END FOR',
    ]) {
      expect(texts(`${c}; SELECT 9`)).toEqual([c, 'SELECT 9']);
    }
  });

  it('finds the statement of a handler declaration', () => {
    const proc =
      "CREATE PROCEDURE p() BEGIN DECLARE EXIT HANDLER FOR SQLSTATE VALUE '42000', NOT FOUND, SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; " +
      'DECLARE CONTINUE HANDLER FOR 1062 IF @x THEN SET @y = 1; END IF; SELECT 1; END';
    expect(texts(`${proc}; SELECT 2`)).toEqual([proc, 'SELECT 2']);
  });

  it('still splits plain transactions and CASE/IF/REPEAT expressions at each `;`', () => {
    expect(texts('BEGIN; SELECT IF(1, 2, 3), REPEAT(\'a\', 2), CASE WHEN 1 THEN 2 END; BEGIN WORK; COMMIT')).toEqual([
      'BEGIN',
      "SELECT IF(1, 2, 3), REPEAT('a', 2), CASE WHEN 1 THEN 2 END",
      'BEGIN WORK',
      'COMMIT',
    ]);
  });
});

describe('lexing follows sql_mode', () => {
  const sql = "SELECT 'a\\'; DELETE FROM t; SELECT '1'";
  it('NO_BACKSLASH_ESCAPES: a backslash does not escape the quote', () => {
    expect(texts(sql, { noBackslashEscapes: true, ansiQuotes: false })).toEqual(["SELECT 'a\\'", 'DELETE FROM t', "SELECT '1'"]);
    expect(texts(sql, DEFAULT_MODE)).toEqual([sql]);
  });

  it('ANSI_QUOTES: "…" is an identifier, where a backslash escapes nothing', () => {
    const q = 'SELECT "a\\"; DELETE FROM t; SELECT "b"';
    expect(texts(q, { noBackslashEscapes: false, ansiQuotes: true })).toEqual(['SELECT "a\\"', 'DELETE FROM t', 'SELECT "b"']);
    expect(texts(q, DEFAULT_MODE)).toEqual([q]);
  });

  it('records the whole text when the mode is unknown and the modes disagree', () => {
    expect(texts(sql, {})).toEqual([`UNSPLIT: ${sql}`]);
    expect(texts(sql)).toEqual([sql]);
    // Modes that agree need not be known.
    expect(texts('SELECT "a;b", \'c\\d\'; SELECT 2', {})).toEqual(['SELECT "a;b", \'c\\d\'', 'SELECT 2']);
  });

  it('does not trust a known mode in text that changes sql_mode', () => {
    const change = "SET sql_mode = 'NO_BACKSLASH_ESCAPES'; SELECT 'a\\'; SELECT 1";
    expect(texts(change, DEFAULT_MODE)).toEqual([`UNSPLIT: ${change}`]);
  });
});

describe('comments', () => {
  it('`-- ` needs a space or control character; `#` runs to the end of the line', () => {
    expect(texts('SELECT 1--1; SELECT 2 -- ;\n; SELECT 3 #;\n; SELECT 4 --\t;\n')).toEqual(['SELECT 1--1', 'SELECT 2', 'SELECT 3', 'SELECT 4']);
  });

  it('executable comments are code: a routine dumped by mysqldump is one statement', () => {
    const dump =
      '/*!50003 CREATE*/ /*!50017 DEFINER=`root`@`localhost`*/ /*!50003 TRIGGER tr BEFORE INSERT ON t FOR EACH ROW BEGIN SET NEW.a = 1; SET NEW.b = 2; END */';
    expect(texts(`${dump};\nSELECT 1`)).toEqual([dump, 'SELECT 1']);
    expect(texts('/*! SELECT 1; SELECT 2 */')).toEqual(['/*! SELECT 1', 'SELECT 2 */']);
  });

  it('a version-conditional comment that moves a boundary makes the text unsplit', () => {
    expect(texts('SELECT 1 /*!99999 ; DELETE FROM t */')).toEqual(['UNSPLIT: SELECT 1 /*!99999 ; DELETE FROM t */']);
    expect(texts("SELECT 1 /*M!100100 , 'x;' */; SELECT 2")).toEqual(["SELECT 1 /*M!100100 , 'x;' */", 'SELECT 2']);
    expect(texts("SELECT 1 /*M!100100 ,' */; SELECT 2; -- '")).toEqual(["UNSPLIT: SELECT 1 /*M!100100 ,' */; SELECT 2; -- '"]);
  });
});

describe('when unsure, the whole text', () => {
  it.each([
    ['DELIMITER (a client command) reaching the server', 'DELIMITER //'],
    ['an Oracle-mode block', 'BEGIN SELECT 1; DELETE FROM t; END'],
    ['an Oracle-mode procedure', 'CREATE PROCEDURE p AS BEGIN SELECT 1; DELETE FROM t; END'],
    ['a block closed by the wrong END', 'BEGIN NOT ATOMIC IF 1 THEN SELECT 1; END LOOP; DELETE FROM t; END'],
    ['an unterminated block', 'BEGIN NOT ATOMIC SELECT 1; DELETE FROM t;'],
    ['a stray END', 'SELECT 1; END; DELETE FROM t'],
    ['a package', 'CREATE PACKAGE pk AS PROCEDURE p; END; SELECT 1'],
  ])('%s', (_why, sql) => {
    const s = split(sql);
    expect(s).toHaveLength(1);
    expect(s[0]!.unsplit).toBe(true);
    expect(s[0]!.text).toBe(sql);
  });
});

describe('secrets and offsets', () => {
  it('masks secrets inside compound statements and unsplit text', () => {
    expect(texts("CREATE PROCEDURE p() BEGIN UPDATE u SET password = 'x'; ALTER USER b IDENTIFIED BY 'y'; END; SELECT 1")).toEqual([
      "CREATE PROCEDURE p() BEGIN UPDATE u SET password = '***'; ALTER USER b IDENTIFIED BY '***'; END",
      'SELECT 1',
    ]);
    expect(texts("BEGIN UPDATE u SET secret = 'x'; END")).toEqual(["UNSPLIT: BEGIN UPDATE u SET secret = '***'; END"]);
  });

  it('each statement says where its text is in what was sent', () => {
    const sql = ' /* c */ SELECT 1 ;\n-- x\n BEGIN NOT ATOMIC SELECT 2; END ; ';
    for (const s of split(sql)) expect(sql.slice(s.start, s.end)).toBe(s.text);
  });
});

describe('results to statements', () => {
  it('gives a compound statement or CALL its result sets and its own closing OK (as MariaDB answers)', () => {
    // Results as MariaDB 10.11 sends them for this text (checked with mysql2 against the test server).
    const sql = 'BEGIN NOT ATOMIC SELECT 1; INSERT INTO t VALUES (1); SELECT 2; END; SELECT 3; IF 1 THEN SELECT 4; END IF; CALL p(); INSERT INTO t VALUES (2)';
    const rows: { rows?: number; affectedRows?: number } = { rows: 1 };
    const ok: { rows?: number; affectedRows?: number } = { affectedRows: 0 };
    const results = [rows, rows, ok, rows, rows, ok, rows, rows, ok, ok];
    expect(resultOwners(split(sql), results)).toEqual([0, 0, 0, 1, 2, 2, 3, 3, 3, 4]);
    // A simple statement answers once, even with a result set.
    expect(resultOwners(split('SELECT 1; SELECT 2'), [rows, rows])).toEqual([0, 1]);
  });
});

describe('restricted statements inside a compound or unsplit text', () => {
  it('names KILL, USE and LOAD found past the first word, so the session can refuse what it would refuse alone', () => {
    const [block] = split('BEGIN NOT ATOMIC SELECT 1; KILL 12; END');
    expect(block!.keyword).toBe('BEGIN');
    expect(block!.restricted).toEqual(['KILL']);
    expect(split("IF 1 THEN USE other; LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t; END IF")[0]!.restricted).toEqual(['USE', 'LOAD']);
    const [unsplit] = split('SELECT "x\\"; KILL 12; -- "', {});
    expect(unsplit!.unsplit).toBe(true);
    expect(unsplit!.restricted).toEqual(['KILL']);
    // A stored program's body runs only when called; a plain statement's words are its own business.
    expect(split('CREATE PROCEDURE p() BEGIN KILL 12; END')[0]!.restricted).toBeUndefined();
    expect(split('SELECT use, kill FROM t')[0]!.restricted).toBeUndefined();
  });
});
