import { describe, it, expect } from 'vitest';
import { redactSql } from '../../proxies/postgres/sql.ts';
import { analyzeSql } from '../../proxies/mysql/sql.ts';
import { compileSecretPattern } from '../../src/config/redaction.ts';

// Secrets in SQL that the server runs later (dynamic SQL, DO and function bodies) and in clauses other
// than CREATE/ALTER ROLE: every recorded text goes through these two functions.
const names = compileSecretPattern(['token', 'api_?key']);
const pg = (sql: string) => redactSql(sql, names).text;
const secretName = (n: string) => n !== '' && !!names?.test(n);
const my = (sql: string) => analyzeSql(sql, secretName).statements.map((s) => s.text).join(' | ');

describe('PostgreSQL redaction of nested SQL and other password clauses', () => {
  it('masks a password in a DO body, in place', () => {
    expect(pg("DO $$ BEGIN ALTER ROLE x PASSWORD 'secret'; END $$")).toBe("DO $$ BEGIN ALTER ROLE x PASSWORD '***'; END $$");
    expect(pg("DO $b$ BEGIN ALTER ROLE x PASSWORD 'secret'; END $b$")).toBe("DO $b$ BEGIN ALTER ROLE x PASSWORD '***'; END $b$");
  });

  it('masks the whole EXECUTE literal of PL/pgSQL that sets a password', () => {
    expect(pg("DO $$ BEGIN EXECUTE 'ALTER ROLE x PASSWORD ''secret'''; END $$")).toBe("DO $$ BEGIN EXECUTE '***'; END $$");
    expect(pg("DO $$ BEGIN EXECUTE E'ALTER ROLE x PASSWORD \\'secret\\''; END $$")).toBe("DO $$ BEGIN EXECUTE '***'; END $$");
  });

  it('masks the literals that follow when the password is built outside the literal', () => {
    const concat = pg("DO $$ BEGIN EXECUTE 'ALTER ROLE x PASSWORD ' || quote_literal('secret'); RAISE NOTICE 'done'; END $$");
    expect(concat).not.toContain('secret');
    expect(concat).toContain("RAISE NOTICE 'done'");
    expect(pg("DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', 'x', 'secret'); END $$")).not.toContain('secret');
  });

  it('masks a password in a function body, dollar-quoted or quoted', () => {
    expect(pg("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE x PASSWORD 'secret'; END $$")).toBe(
      "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER ROLE x PASSWORD '***'; END $$",
    );
    expect(pg("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'ALTER ROLE x PASSWORD ''secret'''")).toBe("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS '***'");
  });

  it('masks ENCRYPTED PASSWORD and a SCRAM verifier as \\password sends it', () => {
    expect(pg("CREATE USER u WITH ENCRYPTED PASSWORD 'secret'")).toBe("CREATE USER u WITH ENCRYPTED PASSWORD '***'");
    expect(pg("ALTER USER x PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy'")).toBe("ALTER USER x PASSWORD '***'");
  });

  it('masks the password option of CREATE SERVER and USER MAPPING', () => {
    expect(pg("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', password 'secret')")).toBe(
      "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'h', password '***')",
    );
    expect(pg("ALTER USER MAPPING FOR alice SERVER s OPTIONS (SET password 'secret')")).toBe("ALTER USER MAPPING FOR alice SERVER s OPTIONS (SET password '***')");
  });

  it('masks connection strings that carry a password', () => {
    expect(pg("SELECT dblink_connect('c', 'host=h dbname=d password=secret')")).toBe("SELECT dblink_connect('c', '***')");
    expect(pg("SELECT dblink_connect('postgresql://u:secret@h/d')")).toBe("SELECT dblink_connect('***')");
  });

  it('leaves literals that merely mention a password alone', () => {
    expect(pg("SELECT 'password reset' AS msg, 'keep' FROM t")).toBe("SELECT 'password reset' AS msg, 'keep' FROM t");
    expect(pg("DO $$ BEGIN RAISE NOTICE 'password changed'; END $$")).toBe("DO $$ BEGIN RAISE NOTICE 'password changed'; END $$");
  });
});

describe('MariaDB redaction of nested SQL', () => {
  it('masks the literal of EXECUTE IMMEDIATE and PREPARE … FROM that sets a password', () => {
    expect(my("EXECUTE IMMEDIATE 'ALTER USER CURRENT_USER() IDENTIFIED BY ''secret'''")).toBe("EXECUTE IMMEDIATE '***'");
    expect(my("PREPARE s FROM 'SET PASSWORD = PASSWORD(''secret'')'")).toBe("PREPARE s FROM '***'");
    expect(my("PREPARE s FROM 'SET PASSWORD FOR u@h = ''*0123ABCD'''")).toBe("PREPARE s FROM '***'");
    expect(my("SET @s = 'ALTER USER x IDENTIFIED BY \\'secret\\''")).toBe("SET @s = '***'");
  });

  it('masks every literal after one that opens IDENTIFIED BY', () => {
    expect(my("EXECUTE IMMEDIATE CONCAT('ALTER USER x IDENTIFIED BY ''', 'secret', '''')")).toBe("EXECUTE IMMEDIATE CONCAT('***', '***', '***')");
    expect(my("EXECUTE IMMEDIATE 'ALTER USER x IDENTIFIED BY ?' USING 'secret'")).toBe("EXECUTE IMMEDIATE '***' USING '***'");
  });

  it('masks SET PASSWORD inside a compound statement, and secret columns in nested SQL', () => {
    expect(my("BEGIN NOT ATOMIC SET PASSWORD FOR u = 'hash'; END")).toBe("BEGIN NOT ATOMIC SET PASSWORD FOR u = '***'; END");
    expect(my("EXECUTE IMMEDIATE 'UPDATE t SET api_key = ''k'' WHERE id = 1'")).toBe("EXECUTE IMMEDIATE '***'");
  });

  it('still masks the direct forms', () => {
    expect(my("ALTER USER x IDENTIFIED VIA ed25519 USING PASSWORD('secret')")).toBe("ALTER USER x IDENTIFIED VIA ed25519 USING PASSWORD('***')");
    expect(my("GRANT SELECT ON *.* TO u@'%' IDENTIFIED BY 'secret'")).toBe("GRANT SELECT ON *.* TO u@'%' IDENTIFIED BY '***'");
  });

  it('leaves ordinary dynamic SQL and UPDATE … SET of other columns alone', () => {
    expect(my("EXECUTE IMMEDIATE 'SELECT ?' USING 'keep'")).toBe("EXECUTE IMMEDIATE 'SELECT ?' USING 'keep'");
    expect(my("UPDATE users SET name = 'bob', api_key = 'k'")).toBe("UPDATE users SET name = 'bob', api_key = '***'");
    expect(my("SELECT 'password reset', 'keep'")).toBe("SELECT 'password reset', 'keep'");
  });
});
