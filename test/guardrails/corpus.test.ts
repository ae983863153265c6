import { beforeAll, describe, expect, it } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';

/**
 * The evasion corpus (issue 19 item 4): each text with the decision vigil must reach. Pure: the same
 * decisions are then checked through psql, mariadb and ssh in the end-to-end tests.
 */

const config = guardrailsSchema().parse([
  {
    name: 'no-drops',
    targets: ['*'],
    roles: ['*'],
    sql: { block: ['drop', 'truncate', 'delete_without_where', 'update_without_where', 'alter_system', 'grant', 'copy_program'], block_writes_to: ['payments.cards'], on_unparsable: 'refuse' },
  },
  { name: 'careful-shell', targets: ['*'], roles: ['oncall'], ssh: { block_commands: ['rm -rf /', 'mkfs*'] } },
]);

type Expect = 'allow' | `block:${string}` | `unparsed:${string}`;

const PG: [string, Expect][] = [
  ['SELECT 1', 'allow'],
  ['DROP TABLE t', 'block:no-drops'],
  ['drop table t', 'block:no-drops'],
  ['DrOp TaBlE t', 'block:no-drops'],
  ['DROP/**/TABLE t', 'block:no-drops'],
  ['/* DROP TABLE t */ SELECT 1', 'allow'],
  ['SELECT \'DROP TABLE t\'', 'allow'],
  ['-- DROP TABLE t\nSELECT 1', 'allow'],
  ['DR/**/OP TABLE t', 'unparsed:no-drops'], // a comment inside a keyword is a syntax error, not a DROP: refused as unparsable
  ['ＤＲＯＰ TABLE t', 'unparsed:no-drops'], // full-width lookalikes
  ['DRОP TABLE t', 'unparsed:no-drops'], // Cyrillic О
  ['SELECT 1; DROP TABLE t', 'block:no-drops'],
  ['SELECT 1;DROP TABLE t;SELECT 2', 'block:no-drops'],
  ['TRUNCATE t', 'block:no-drops'],
  ['DELETE FROM t', 'block:no-drops'],
  ['DELETE FROM t WHERE id = 1', 'allow'],
  ['DELETE FROM t WHERE true', 'block:no-drops'],
  ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'block:no-drops'],
  ['UPDATE t SET a = 1', 'block:no-drops'],
  ['UPDATE t SET a = 1 WHERE id = 2', 'allow'],
  ['ALTER SYSTEM SET work_mem = \'1GB\'', 'block:no-drops'],
  ['GRANT SELECT ON t TO bob', 'block:no-drops'],
  ['REVOKE SELECT ON t FROM bob', 'allow'],
  ['COPY t FROM PROGRAM \'curl evil\'', 'block:no-drops'],
  ['COPY t TO STDOUT', 'allow'],
  ['INSERT INTO payments.cards VALUES (1)', 'block:no-drops'],
  ['INSERT INTO cards VALUES (1)', 'block:no-drops'], // unqualified: may resolve to payments.cards
  ['UPDATE "payments"."cards" SET a = 1 WHERE id = 1', 'block:no-drops'],
  ['INSERT INTO payments.orders VALUES (1)', 'allow'],
  ['SELECT * FROM payments.cards', 'allow'],
  ['PREPARE p AS DELETE FROM t', 'block:no-drops'],
  ['PREPARE p AS SELECT 1', 'allow'],
  ['EXPLAIN ANALYZE DELETE FROM t', 'block:no-drops'],
  ['DO $$ BEGIN DROP TABLE t; END $$', 'block:no-drops'],
  ['DO $$ BEGIN EXECUTE \'DROP TABLE t\'; END $$', 'block:no-drops'],
  ['DO $$ BEGIN EXECUTE \'DR\' || \'OP TABLE t\'; END $$', 'unparsed:no-drops'], // dynamic SQL: cannot be known
  ['DO $$ BEGIN PERFORM 1; END $$', 'allow'],
  ['CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN TRUNCATE t; END $$', 'block:no-drops'],
  ['CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$', 'allow'],
  ['SELECT 1 FROM', 'allow'], // a lone SELECT is allowed without parsing (the server refuses bad syntax itself)
  ['FROM t SELECT', 'unparsed:no-drops'],
  ['SELECT 1;DELETE FROM t', 'block:no-drops'], // a second statement always goes to the parser
  ['SELECT 1 /* x */; DROP TABLE t', 'block:no-drops'],
  ['SELECT * FROM t FOR UPDATE', 'allow'],
];

const MY: [string, Expect][] = [
  ['SELECT 1', 'allow'],
  ['DROP TABLE t', 'block:no-drops'],
  ['dRoP tAbLe t', 'block:no-drops'],
  ['DROP/**/TABLE t', 'block:no-drops'],
  ['DROP DATABASE shop', 'block:no-drops'],
  ['SELECT 1; DROP TABLE t', 'block:no-drops'],
  ['SELECT 1 /*! ; DROP TABLE t */', 'unparsed:no-drops'], // executable comment: the server runs it
  ['SELECT 1 /*M!100000 ; DROP TABLE t */', 'unparsed:no-drops'],
  ['TRUNCATE TABLE t', 'block:no-drops'],
  ['DELETE FROM t', 'block:no-drops'],
  ['DELETE FROM t WHERE id = 1', 'allow'],
  ['UPDATE t SET a = 1', 'block:no-drops'],
  ['UPDATE t SET a = 1 WHERE id = 1', 'allow'],
  ['SET GLOBAL max_connections = 10', 'block:no-drops'],
  ['SET SESSION sql_mode = \'\'', 'allow'],
  ['GRANT SELECT ON t TO u', 'block:no-drops'],
  ['INSERT INTO payments.cards VALUES (1)', 'block:no-drops'],
  ['REPLACE INTO payments.cards VALUES (1)', 'block:no-drops'],
  ['INSERT INTO payments.orders VALUES (1)', 'allow'],
  ['PREPARE s FROM \'DROP TABLE t\'', 'unparsed:no-drops'], // dynamic SQL
  ['ＤＲＯＰ TABLE t', 'unparsed:no-drops'],
  ['SELECT 1 /*!; DROP TABLE t */', 'unparsed:no-drops'], // the SELECT fast path never skips a block comment
  ['SET NAMES utf8mb4', 'allow'], // not in the grammar, but a session setting
  ['SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED', 'allow'],
  ['SHOW WARNINGS', 'allow'],
  ['SET PERSIST max_connections = 10', 'block:no-drops'],
  ['SET SESSION sql_mode = \'\', GLOBAL max_connections = 10', 'unparsed:no-drops'], // refused either way
  ['SHOW WARNINGS; DROP TABLE t', 'unparsed:no-drops'],
  ['SET PASSWORD FOR bob = PASSWORD(\'x\')', 'unparsed:no-drops'],
];

const SSH: [string, Expect][] = [
  ['uptime', 'allow'],
  ['rm -rf /', 'block:careful-shell'],
  ['rm -rf /tmp/x', 'allow'],
  ['rm -fr /', 'block:careful-shell'],
  ['rm -r -f /', 'block:careful-shell'],
  ['rm -Rf //', 'block:careful-shell'],
  ['rm --recursive --force /', 'block:careful-shell'],
  ['/bin/rm -rf /', 'block:careful-shell'],
  ["'rm' '-rf' '/'", 'block:careful-shell'],
  ['r"m" -rf /', 'block:careful-shell'],
  ['rm -rf /tmp/..', 'block:careful-shell'],
  ['rm -rf \\\n /', 'block:careful-shell'], // backslash-newline continuation
  ['rm${IFS}-rf${IFS}/', 'block:careful-shell'],
  ['rm$IFS-rf$IFS/', 'block:careful-shell'],
  ['echo hi; rm -rf /', 'block:careful-shell'],
  ['true && rm -rf /', 'block:careful-shell'],
  ['ls | rm -rf /', 'block:careful-shell'],
  ['echo $(rm -rf /)', 'block:careful-shell'],
  ['echo `rm -rf /`', 'block:careful-shell'],
  ['sudo -u root rm -rf /', 'block:careful-shell'],
  ['env X=1 nice -n 5 rm -rf /', 'block:careful-shell'],
  ['sh -c "rm -rf /"', 'block:careful-shell'],
  ["bash -lc 'echo ok; rm -rf /'", 'block:careful-shell'],
  ['eval rm -rf /', 'block:careful-shell'],
  ["alias x='rm -rf /'", 'block:careful-shell'], // defining it is refused
  ["alias r='rm -rf'; r /", 'allow'], // using an alias cannot be checked (README): not sound
  ['rm -rf $DIR', 'block:careful-shell'], // $DIR could be /
  ['rm -rf "$HOME/tmp"', 'allow'], // cannot be /
  ['$(echo rm) -rf /', 'unparsed:careful-shell'],
  ['mkfs.ext4 /dev/sda1', 'block:careful-shell'],
  ['/sbin/mkfs -t xfs /dev/sdb', 'block:careful-shell'],
  ['echo mkfs', 'allow'],
  ['echo "rm -rf /"', 'allow'],
  ["echo 'unterminated", 'unparsed:careful-shell'],
];

function expected(d: ReturnType<NonNullable<ReturnType<Guardrails['forSession']>>['checkSql']>): Expect {
  if (d.action === 'allow') return 'allow';
  return d.unparsed ? `unparsed:${d.rule}` : `block:${d.rule}`;
}

describe('guardrail evasion corpus', () => {
  const g = new Guardrails(config);
  beforeAll(() => Guardrails.ready());

  it.each(PG)('postgres %j → %s', (sql, want) => {
    expect(expected(g.forSession({ roles: ['dev'], target: 'pg' })!.checkSql(sql, 'postgres'))).toBe(want);
  });
  it.each(MY)('mysql %j → %s', (sql, want) => {
    expect(expected(g.forSession({ roles: ['dev'], target: 'my' })!.checkSql(sql, 'mysql'))).toBe(want);
  });
  it.each(SSH)('ssh %j → %s', (line, want) => {
    expect(expected(g.forSession({ roles: ['oncall'], target: 'box' })!.checkCommand(line))).toBe(want);
  });

  it('applies by role and target: careful-shell is for oncall only', () => {
    expect(g.forSession({ roles: ['dev'], target: 'box' })!.checkCommand('rm -rf /')).toEqual({ action: 'allow' });
    const only = new Guardrails(guardrailsSchema().parse([{ name: 'prod', targets: ['prod-pg'], roles: ['dev'], sql: { block: ['drop'] } }]));
    expect(only.forSession({ roles: ['dev'], target: 'staging-pg' })).toBeUndefined();
    expect(only.forSession({ roles: ['admin'], target: 'prod-pg' })).toBeUndefined();
    expect(only.forSession({ roles: ['dev'], target: 'prod-pg' })!.checkSql('DROP TABLE t', 'postgres').action).toBe('block');
  });

  it('require_approval refuses with its own decision, and on_unparsable: allow lets unparsable text through', () => {
    const g2 = new Guardrails(guardrailsSchema().parse([{ name: 'ask', sql: { require_approval: ['truncate'], on_unparsable: 'allow' } }]));
    const s = g2.forSession({ roles: ['x'], target: 't' })!;
    expect(s.checkSql('TRUNCATE t', 'postgres')).toMatchObject({ action: 'require_approval', rule: 'ask' });
    expect(s.checkSql('SELEC 1', 'postgres')).toEqual({ action: 'allow' });
  });

  it('counts decisions for /metrics', () => {
    const g3 = new Guardrails(config);
    const s = g3.forSession({ roles: ['oncall'], target: 'x' })!;
    s.checkSql('SELECT 1', 'postgres');
    s.checkSql('DROP TABLE t', 'postgres');
    s.checkCommand('rm -rf /');
    const lines: string[] = [];
    g3.renderMetrics(lines);
    expect(lines).toContain('vigil_guardrail_decisions_total{protocol="postgres",decision="allow",rule=""} 1');
    expect(lines).toContain('vigil_guardrail_decisions_total{protocol="postgres",decision="block",rule="no-drops"} 1');
    expect(lines).toContain('vigil_guardrail_decisions_total{protocol="ssh",decision="block",rule="careful-shell"} 1');
  });
});
