import { describe, it, expect, beforeAll } from 'vitest';
import { loadSqlParsers, classifyPostgres, classifyMysql } from '../../recorder/reports/classify-sql.ts';
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
