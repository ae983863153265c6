import { describe, it, expect } from 'vitest';
import { analyzeSql } from '../../proxies/mysql/sql.ts';

const patterns = ['pass(word)?', 'secret', 'token', 'api_?key', 'credential'].map((p) => new RegExp(p, 'i'));
const secret = (n: string) => n !== '' && patterns.some((r) => r.test(n));
const texts = (sql: string) => analyzeSql(sql, secret).statements.map((s) => s.text);

describe('mysql SQL scanner', () => {
  it('splits multi-statements outside strings and comments', () => {
    expect(texts("SELECT 1; SELECT 'a;b'; /* ; */ SELECT `x;y` FROM t -- ;\n;")).toEqual(["SELECT 1", "SELECT 'a;b'", "SELECT `x;y` FROM t"]);
    expect(analyzeSql('USE shop; select 2', secret).statements.map((s) => s.keyword)).toEqual(['USE', 'SELECT']);
  });

  it('masks credentials in account statements', () => {
    expect(texts("ALTER USER 'bob'@'%' IDENTIFIED BY 'hunter2'")).toEqual(["ALTER USER 'bob'@'%' IDENTIFIED BY '***'"]);
    expect(texts("CREATE USER e IDENTIFIED VIA ed25519 USING PASSWORD('s3cret')")).toEqual(["CREATE USER e IDENTIFIED VIA ed25519 USING PASSWORD('***')"]);
    expect(texts("SET PASSWORD FOR 'bob'@'%' = PASSWORD('x1')")).toEqual(["SET PASSWORD FOR 'bob'@'%' = PASSWORD('***')"]);
    expect(texts("SET PASSWORD = 'it''s'")).toEqual(["SET PASSWORD = '***'"]);
    expect(texts("GRANT ALL ON *.* TO x IDENTIFIED BY 'a\\'b'")).toEqual(["GRANT ALL ON *.* TO x IDENTIFIED BY '***'"]);
  });

  it('masks literals compared with or assigned to secret-looking columns', () => {
    expect(texts("UPDATE users SET password = 'p', name = 'bob' WHERE api_key='k'")).toEqual(["UPDATE users SET password = '***', name = 'bob' WHERE api_key='***'"]);
    expect(texts("INSERT INTO users (name, password) VALUES ('bob', 'pw')")).toEqual(["INSERT INTO users (name, password) VALUES ('bob', '***')"]);
    expect(texts("SELECT 'password'")).toEqual(["SELECT 'password'"]);
  });

  it('names the columns placeholders stand for', () => {
    expect(analyzeSql('UPDATE u SET `token` = ?, n = ? WHERE id = ?', secret).paramNames).toEqual(['token', 'n', 'id']);
    expect(analyzeSql('INSERT INTO u (id, secret, c) VALUES (?, ?, NOW())', secret).paramNames).toEqual(['id', 'secret']);
    expect(analyzeSql("SELECT ? , '?'", secret).paramNames).toEqual(['select']);
  });

  it('parses KILL forms vigil maps, and flags others', () => {
    const k = (sql: string) => analyzeSql(sql, secret).statements[0]!.kill;
    expect(k('KILL QUERY 12')).toEqual({ query: true, id: 12 });
    expect(k('kill 7;')).toEqual({ query: false, id: 7 });
    expect(k('KILL HARD CONNECTION 9')).toEqual({ query: false, id: 9 });
    expect(k('KILL QUERY ID 5')).toEqual({ unsupported: true });
    expect(k('KILL USER bob')).toEqual({ unsupported: true });
    expect(k('KILL 1+1')).toEqual({ unsupported: true });
  });

  it('sees statements inside executable comments', () => {
    expect(analyzeSql('/*!50000 KILL 5 */', secret).statements[0]!.keyword).toBe('KILL');
    expect(analyzeSql('/* KILL 5 */ SELECT 1', secret).statements[0]!.keyword).toBe('SELECT');
  });

  it('never throws on odd input', () => {
    for (const s of ["'unterminated", '`x', '/* open', '-- only comment', '', ';;;', '?'.repeat(50), 'SELECT "a""b"']) expect(() => analyzeSql(s, secret)).not.toThrow();
  });
});

describe('USE parsing', () => {
  const use = (sql: string) => analyzeSql(sql, secret).statements[0]!.use;
  it('extracts the database of a plain USE and flags anything else', () => {
    expect(use('USE shop')).toBe('shop');
    expect(use('use `we``ird`')).toBe('we`ird');
    expect(use('USE/*x*/Other')).toBe('Other');
    expect(use('USE shop extra')).toBeNull();
    expect(use('USE')).toBeNull();
    expect(use('SELECT 1')).toBeUndefined();
  });
});
