import { describe, it, expect, beforeAll } from 'vitest';
import { loadSqlParsers, classifyPostgres, classifyMysql, resolveExecutes } from '../../recorder/reports/classify-sql.ts';
import { classifyShellCommand, isSftpWrite } from '../../recorder/reports/classify-ssh.ts';

beforeAll(() => loadSqlParsers());

describe('access report: SQL classified by the dialect grammar', () => {
  it('Postgres (libpg_query): DDL, DML, ALTER SYSTEM, GRANT, nested writes, reads, unparseable', () => {
    const cases: [string, string][] = [
      ['CREATE TABLE t (a int)', 'ddl'],
      ['ALTER TABLE t ADD COLUMN b text', 'ddl'],
      ['DROP INDEX i', 'ddl'],
      ['SELECT * INTO copy FROM t', 'ddl'],
      ["INSERT INTO t VALUES (1)", 'dml'],
      ['UPDATE t SET a = 2', 'dml'],
      ['TRUNCATE t', 'dml'],
      ['COPY t FROM STDIN', 'dml'],
      ['WITH gone AS (DELETE FROM t RETURNING *) SELECT count(*) FROM gone', 'dml'],
      ['EXPLAIN ANALYZE DELETE FROM t', 'dml'],
      ['EXPLAIN DELETE FROM t', 'read'],
      ["ALTER SYSTEM SET work_mem = '64MB'", 'config'],
      ['GRANT SELECT ON t TO bob', 'privilege'],
      ['ALTER ROLE bob SUPERUSER', 'privilege'],
      ['DO $$ BEGIN PERFORM 1; END $$', 'procedure'],
      ['SELECT 1; UPDATE t SET a = 1', 'dml'],
      ['SELECT * FROM t', 'read'],
      ['BEGIN', 'session'],
      ['SET search_path = app', 'session'],
      ['SELEC 1', 'unclassified'],
    ];
    expect(cases.map(([sql]) => [sql, classifyPostgres(sql).class])).toEqual(cases);
    expect(classifyPostgres('SELEC 1').error).toMatch(/syntax error/);
  });

  it('MySQL/MariaDB (node-sql-parser): DDL, DML, SET GLOBAL, GRANT, users, reads, unparseable', () => {
    const cases: [string, string][] = [
      ['CREATE TABLE t (a int)', 'ddl'],
      ['ALTER TABLE t ADD c int', 'ddl'],
      ['DROP TABLE t', 'ddl'],
      ['INSERT INTO t VALUES (1)', 'dml'],
      ['REPLACE INTO t VALUES (1)', 'dml'],
      ["LOAD DATA INFILE 'x' INTO TABLE t", 'dml'],
      ['SET GLOBAL max_connections = 10', 'config'],
      ["GRANT SELECT ON db.t TO 'bob'@'%'", 'privilege'],
      ["CREATE USER 'x'@'%' IDENTIFIED BY 'p'", 'privilege'],
      ['select @@version_comment limit 1', 'read'],
      ['SHOW TABLES', 'read'],
      ['USE app', 'session'],
      ['FLUSH PRIVILEGES', 'unclassified'],
    ];
    expect(cases.map(([sql]) => [sql, classifyMysql(sql).class])).toEqual(cases);
  });
});

describe('access report: statements run by name, copied out, or setting server variables', () => {
  it('Postgres: PREPARE by what it prepares, EXECUTE by the PREPARE in the same text or else unclassified, COPY of a query by the query', () => {
    const cases: [string, string][] = [
      ['PREPARE d AS DELETE FROM accounts; EXECUTE d;', 'dml'],
      ['PREPARE d AS DELETE FROM accounts', 'dml'],
      ['PREPARE q AS SELECT 1; EXECUTE q', 'read'],
      ['EXECUTE d', 'unclassified'],
      ['EXPLAIN ANALYZE EXECUTE d', 'unclassified'],
      ['CREATE TABLE x AS EXECUTE d', 'unclassified'],
      ['COPY (DELETE FROM accounts RETURNING *) TO STDOUT', 'dml'],
      ['COPY (WITH g AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM g) TO STDOUT', 'dml'],
      ['COPY (SELECT * FROM t) TO STDOUT', 'read'],
      ['COPY t TO STDOUT', 'read'],
      ["COPY t TO PROGRAM 'gzip > /tmp/t.gz'", 'procedure'],
      ['DEALLOCATE d', 'session'],
    ];
    expect(cases.map(([sql]) => [sql, classifyPostgres(sql).class])).toEqual(cases);
    expect(classifyPostgres('EXECUTE d').error).toMatch(/prepared statement d/);
    // What the session prepared earlier resolves it (the report keeps each session's PREPAREs).
    const prepared = classifyPostgres('PREPARE d AS DELETE FROM accounts');
    expect(prepared).toMatchObject({ preparesOnly: true, prepares: [{ name: 'd', class: 'dml' }] });
    expect(resolveExecutes(classifyPostgres('EXECUTE d(1)'), (n) => prepared.prepares!.find((p) => p.name === n)).class).toBe('dml');
    expect(resolveExecutes(classifyPostgres('EXECUTE other'), (n) => prepared.prepares!.find((p) => p.name === n)).class).toBe('unclassified');
  });

  it('MySQL: server variables by any spelling are config; PREPARE … FROM and EXECUTE as on Postgres', () => {
    const cases: [string, string][] = [
      ['SET @@global.max_connections=1000', 'config'],
      ['SET @@GLOBAL.general_log = 0', 'config'],
      ['SET @@persist.max_connections = 10', 'config'],
      ['SET @@persist_only.max_connections = 10', 'config'],
      ['SET PERSIST max_connections = 10', 'config'],
      ['SET @@session.sql_mode = ""', 'session'],
      ['SET @@sql_mode = ""', 'session'],
      ['SET @a = 1', 'session'],
      ["PREPARE s FROM 'DELETE FROM t WHERE a = ''x'''", 'dml'],
      ['PREPARE s FROM "UPDATE t SET a = 1"', 'dml'],
      ["PREPARE s FROM 'SELECT 1'", 'read'],
      ['PREPARE s FROM @q', 'unclassified'],
      ['EXECUTE s', 'unclassified'],
      ['EXECUTE s USING @a, @b', 'unclassified'],
      ['DEALLOCATE PREPARE s', 'session'],
    ];
    expect(cases.map(([sql]) => [sql, classifyMysql(sql).class])).toEqual(cases);
    const prepared = classifyMysql("PREPARE Del FROM 'DELETE FROM t'");
    expect(prepared.prepares).toEqual([{ name: 'del', class: 'dml', kinds: ['delete'] }]);
    expect(resolveExecutes(classifyMysql('EXECUTE del'), (n) => prepared.prepares!.find((p) => p.name === n)).class).toBe('dml');
  });
});

describe('access report: SSH commands and file operations that change a host', () => {
  it('editors, services, packages, file utilities and redirections; reads are not changes', () => {
    const cases: [string, string | undefined][] = [
      ['vim /etc/nginx/nginx.conf', 'editor'],
      ['sudo -u root nano /etc/hosts', 'editor'],
      ["sed -i 's/a/b/' /etc/app.conf", 'editor'],
      ['sudo systemctl restart nginx', 'service'],
      ['service postgresql reload', 'service'],
      ['apt-get install -y curl', 'package'],
      ['cd /srv && rm -rf cache', 'file'],
      ['echo hi > /etc/motd', 'file'],
      ['echo hi 2>&1 >/dev/null', undefined],
      ['cat /etc/passwd | grep root', undefined],
      ["grep 'a > b' file", undefined],
      ['ls -la; uptime', undefined],
      ['/usr/bin/passwd alice', 'user'],
      ['sudo -e /etc/sudoers.d/ops', 'editor'],
      ['timeout 5 sudo -i', undefined],
    ];
    expect(cases.map(([c]) => [c, classifyShellCommand(c)])).toEqual(cases);
  });

  it('SFTP writes: open for writing, remove, rename, mkdir; open for reading is not', () => {
    expect(isSftpWrite({ op: 'open', flags: ['write', 'creat', 'trunc'] })).toBe(true);
    expect(isSftpWrite({ op: 'open', flags: ['read'] })).toBe(false);
    expect(isSftpWrite({ op: 'remove', path: '/x' })).toBe(true);
    expect(isSftpWrite({ op: 'close' })).toBe(false);
  });
});
