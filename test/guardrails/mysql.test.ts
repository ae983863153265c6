import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type MyWorld } from '../mysql/helpers.ts';
import { enableGeneralLog } from '../mysql/general-log.ts';

/**
 * Guardrails through the stock mariadb client (and mysql2 for COM_STMT_PREPARE) against a real MariaDB
 * with its general log on: a refused statement gets an ERR 1227 naming the rule, the general log shows
 * it never arrived, an event records it, and the session goes on.
 */

let w: MyWorld;
let generalLog: string;

beforeAll(async () => {
  w = await startWorld({
    guardrails: [
      {
        name: 'no-drops',
        targets: ['db'],
        roles: ['*'],
        sql: { block: ['drop', 'truncate', 'delete_without_where', 'update_without_where', 'alter_system', 'grant'], block_writes_to: ['shop.items'], on_unparsable: 'refuse' },
      },
    ],
  });
  await w.db.query('CREATE TABLE other.g (id INT, v TEXT); INSERT INTO other.g VALUES (1, "one"), (2, "two")');
  generalLog = await enableGeneralLog(w.db);
}, 120_000);

afterAll(async () => {
  await w?.stop();
});

const logged = () => fs.readFileSync(generalLog, 'utf8');
const refusals = () => w.tg.events.filter((e) => e.type === 'guardrail.blocked' || e.type === 'guardrail.unparsed');

describe('mysql guardrails with the mariadb client', () => {
  it('refuses DROP with ERR 1227 naming the rule; the server never sees it; the session continues', async () => {
    const before = refusals().length;
    // From stdin with --force, the client goes on after an error (-e would stop), each statement on its own.
    const r = await w.cli(['--user=db', '--force'], { input: "SELECT 'before';\nDROP TABLE other.g;\nSELECT 'after', COUNT(*) FROM other.g;\n" });
    expect(r.stderr).toContain('ERROR 1227 (42000)');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    expect(r.stdout).toContain('before');
    expect(r.stdout).toMatch(/after\s+2/);
    expect(logged()).not.toContain('DROP TABLE other.g');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && refusals().length > before);
    const ev = refusals().slice(before);
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'guardrail.blocked', outcome: 'failure', details: { rule: 'no-drops', reason: 'DROP', decision: 'block', command: 'COM_QUERY' } });
  });

  it('each corpus case through the client: refused ones never reach the server, allowed ones run', async () => {
    const cases: [string, string | null][] = [
      ['dRoP/**/TaBlE other.g', 'DROP'],
      ['DELETE FROM other.g', 'DELETE without WHERE'],
      ["UPDATE other.g SET v = 'x'", 'UPDATE without WHERE'],
      ['TRUNCATE TABLE other.g', 'TRUNCATE'],
      ['SET GLOBAL max_connections = 99', 'ALTER SYSTEM'],
      ["GRANT SELECT ON other.g TO 'nobody'@'%'", 'GRANT'],
      ["INSERT INTO shop.items (id, name) VALUES (99, 'x')", 'write to shop.items'],
      ['SELECT 1 /*! ; DROP TABLE other.g */', 'unparsable'],
      ["PREPARE s FROM 'DROP TABLE other.g'", 'unparsable'],
      ["UPDATE other.g SET v = 'uno' WHERE id = 1", null],
    ];
    for (const [sql, reason] of cases) {
      const r = await w.cli(['--user=db', '-e', sql]);
      if (reason === null) {
        expect(r.code, `${sql}: ${r.stderr}`).toBe(0);
        expect(logged()).toContain(sql);
      } else {
        expect(r.stderr, sql).toContain(`vigil guardrail "no-drops" refused this statement (${reason}`);
        expect(logged(), sql).not.toContain(sql);
      }
    }
    expect((await w.db.query('SELECT COUNT(*) FROM other.g'))[0]).toEqual(['2']);
    expect((await w.db.query("SELECT COUNT(*) FROM shop.items WHERE id = 99"))[0]).toEqual(['0']);
    await w.tg.waitForEvent((e) => e.type === 'guardrail.unparsed');
  });

  it('SET of an @@global / @@persist / @@persist_only variable is ALTER SYSTEM, in any case and after a session one', async () => {
    const serverSettings = () => w.db.query('SELECT @@global.general_log, @@global.read_only, @@global.max_connections');
    const settingsBefore = await serverSettings();
    const refused = [
      'SET @@global.general_log = OFF',
      'SET @@GLOBAL.sql_log_bin = 0',
      'SET @@persist.max_connections = 1',
      'SET @@persist_only.max_connections = 1',
      'SET @@global.read_only=1, @@session.wait_timeout=1',
      'SET @@session.wait_timeout = 1, @@Global.max_connections = 7',
    ];
    for (const sql of refused) {
      const r = await w.cli(['--user=db', '-e', sql]);
      expect(r.stderr, sql).toContain('vigil guardrail "no-drops" refused this statement (ALTER SYSTEM)');
      expect(logged(), sql).not.toContain(sql);
    }
    // Reading a server variable, or setting the session's, changes nothing for anyone else.
    for (const sql of ['SET @seen = @@global.max_connections', 'SET @@session.wait_timeout = 100']) {
      const r = await w.cli(['--user=db', '-e', sql]);
      expect(r.code, `${sql}: ${r.stderr}`).toBe(0);
      expect(logged()).toContain(sql);
    }
    expect(await serverSettings()).toEqual(settingsBefore);
  });

  it('a multi-statement COM_QUERY is refused whole: none of it runs', async () => {
    const c = await w.connect('db', { multipleStatements: true });
    try {
      const e = await c.query("INSERT INTO other.g VALUES (3, 'three'); DROP TABLE other.g").catch((x) => x);
      expect(e).toMatchObject({ errno: 1227, message: expect.stringContaining('guardrail "no-drops"') });
      const [rows] = await c.query('SELECT COUNT(*) AS n FROM other.g; SELECT 1 AS one');
      expect(rows).toEqual([[{ n: 2 }], [{ one: 1 }]]);
    } finally {
      await c.end();
    }
    expect(logged()).not.toContain("VALUES (3, 'three')");
  });

  it('COM_STMT_PREPARE of a refused statement (mysql2 execute) gets the ERR; the connection goes on', async () => {
    const c = await w.connect('db');
    try {
      const e = await c.execute('DELETE FROM other.g').catch((x) => x);
      expect(e).toMatchObject({ errno: 1227, message: expect.stringContaining('guardrail "no-drops"') });
      const [rows] = await c.execute('SELECT COUNT(*) AS n FROM other.g WHERE id > ?', [0]);
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await c.end();
    }
    await w.tg.waitForEvent((x) => x.type === 'guardrail.blocked' && x.details?.command === 'COM_STMT_PREPARE');
  });
});
