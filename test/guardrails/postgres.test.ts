import fs from 'node:fs';
import https from 'node:https';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type PgWorld } from '../postgres/helpers.ts';

/**
 * Guardrails through stock psql (and node-postgres for the extended protocol) against a real
 * PostgreSQL with log_statement = all: a refused statement gets 42501 naming the rule, the server's log
 * shows it never arrived, an event records it, and the session goes on.
 */

let w: PgWorld;

beforeAll(async () => {
  w = await startWorld(
    {
      guardrails: [
        {
          name: 'no-drops',
          targets: ['pg'],
          roles: ['*'],
          sql: { block: ['drop', 'truncate', 'delete_without_where', 'update_without_where', 'alter_system', 'grant', 'copy_program'], block_writes_to: ['payments.cards'], on_unparsable: 'refuse' },
        },
      ],
    },
    { pgConf: ['log_statement = all'] },
  );
  w.pg.psql('CREATE TABLE guarded (id int, v text); INSERT INTO guarded VALUES (1, $$one$$), (2, $$two$$); GRANT ALL ON guarded TO scram_user; CREATE SCHEMA payments; CREATE TABLE payments.cards (n text); GRANT ALL ON SCHEMA payments TO scram_user; GRANT ALL ON payments.cards TO scram_user;');
}, 120_000);

afterAll(async () => {
  await w?.stop();
});

const refusals = (rule = 'no-drops') => w.tg.events.filter((e) => (e.type === 'guardrail.blocked' || e.type === 'guardrail.unparsed') && e.details?.rule === rule);

describe('postgres guardrails with psql', () => {
  it('refuses DROP with 42501 naming the rule; the server never sees it; the table survives', async () => {
    const before = refusals().length;
    const r = await w.psql(['-v', 'VERBOSITY=verbose', '-c', 'DROP TABLE guarded']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('42501');
    expect(r.stderr).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    expect(w.pg.logs()).not.toMatch(/statement: DROP TABLE guarded/);
    expect(w.pg.psql('SELECT count(*) FROM guarded')).toBe('2');
    await w.tg.waitForEvent(() => refusals().length > before);
    const ev = refusals().slice(before);
    expect(ev).toHaveLength(1);
    expect(ev[0]).toMatchObject({ type: 'guardrail.blocked', outcome: 'failure', details: { rule: 'no-drops', reason: 'DROP', sql: 'DROP TABLE guarded', decision: 'block', protocol: 'simple' } });
    expect(ev[0].actor?.user).toBe('alice');
  });

  it('the session goes on after a refusal (psql script without ON_ERROR_STOP)', async () => {
    const script = "SELECT 'before';\nDELETE FROM guarded;\nSELECT 'after', count(*) FROM guarded;\nUPDATE guarded SET v = 'x';\nTRUNCATE guarded;\nSELECT 'end';\n";
    const r = await w.psql(['-A', '-t', '-v', 'ON_ERROR_STOP=0'], { input: script });
    expect(r.stdout.trim().split('\n')).toEqual(['before', 'after|2', 'end']);
    expect(r.stderr.match(/vigil guardrail "no-drops"/g)).toHaveLength(3);
    expect(w.pg.logs()).not.toMatch(/statement: (DELETE FROM guarded;?$|UPDATE guarded SET v = 'x'|TRUNCATE guarded)/m);
  });

  it('a multi-statement string is refused whole: none of it runs', async () => {
    const r = await w.psql(['-c', "INSERT INTO guarded VALUES (3, 'three'); DROP TABLE guarded"]);
    expect(r.stderr).toContain('guardrail "no-drops"');
    expect(w.pg.psql('SELECT count(*) FROM guarded')).toBe('2');
    expect(w.pg.logs()).not.toContain("VALUES (3, 'three')");
  });

  it('comments, case, PREPARE, ALTER SYSTEM, GRANT, COPY PROGRAM, named-table writes, dynamic SQL and unparsable text', async () => {
    const cases: [string, string][] = [
      ['dRoP/**/TaBlE guarded', 'DROP'],
      ['PREPARE p AS DELETE FROM guarded', 'DELETE without WHERE'],
      ["ALTER SYSTEM SET work_mem = '64MB'", 'ALTER SYSTEM'],
      ['GRANT SELECT ON guarded TO PUBLIC', 'GRANT'],
      ["COPY guarded FROM PROGRAM 'true'", 'COPY … PROGRAM'],
      ["INSERT INTO payments.cards VALUES ('4111')", 'write to payments.cards'],
      ["DO $$ BEGIN EXECUTE 'DROP TABLE gua' || 'rded'; END $$", 'unparsable'],
      ['DR/**/OP TABLE guarded', 'unparsable'],
    ];
    for (const [sql, reason] of cases) {
      const r = await w.psql(['-c', sql]);
      expect(r.stderr, sql).toContain(`vigil guardrail "no-drops" refused this statement (${reason}`);
      expect(w.pg.logs(), sql).not.toContain(sql);
    }
    expect(w.pg.psql('SELECT count(*) FROM payments.cards')).toBe('0');
    await w.tg.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.sql === 'DR/**/OP TABLE guarded');
  });

  it('role membership granted without GRANT, ALTER DEFAULT PRIVILEGES … GRANT and DROP USER MAPPING are refused', async () => {
    w.pg.psql('CREATE ROLE guard_group; CREATE ROLE guard_member');
    const membershipsBefore = w.pg.psql('SELECT count(*) FROM pg_auth_members');
    const cases: [string, string][] = [
      ['ALTER GROUP guard_group ADD USER guard_member', 'GRANT'],
      ['CREATE ROLE guard_bob IN ROLE pg_execute_server_program', 'GRANT'],
      ['CREATE USER guard_bob IN GROUP guard_group', 'GRANT'],
      ['CREATE ROLE guard_x ROLE guard_member', 'GRANT'],
      ['CREATE ROLE guard_x ADMIN guard_member', 'GRANT'],
      ['ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO public', 'GRANT'],
      ['DROP USER MAPPING FOR guard_member SERVER guard_server', 'DROP'],
    ];
    for (const [sql, reason] of cases) {
      const r = await w.psql(['-c', sql]);
      expect(r.stderr, sql).toContain(`vigil guardrail "no-drops" refused this statement (${reason})`);
      expect(w.pg.logs(), sql).not.toContain(sql);
    }
    // Taking membership or default privileges away is a REVOKE, which no rule guards: it reaches the server.
    for (const sql of ['ALTER GROUP guard_group DROP USER guard_member', 'ALTER DEFAULT PRIVILEGES REVOKE ALL ON TABLES FROM public']) {
      const r = await w.psql(['-c', sql]);
      expect(r.stderr, sql).not.toContain('vigil guardrail');
      expect(w.pg.logs(), sql).toContain(sql);
    }
    expect(w.pg.psql("SELECT count(*) FROM pg_roles WHERE rolname IN ('guard_bob', 'guard_x')")).toBe('0');
    expect(w.pg.psql('SELECT count(*) FROM pg_auth_members')).toBe(membershipsBefore);
  });

  it('a refused statement larger than one TCP chunk is held whole and never relayed', async () => {
    const big = `DROP TABLE guarded /* ${'x'.repeat(300_000)} */`;
    const r = await w.psql([], { input: `${big};\n` });
    expect(r.stderr).toContain('guardrail "no-drops"');
    expect(w.pg.logs()).not.toContain('xxxxxxxxxxxxxxxxxxxx');
    const ok = await w.psql(['-A', '-t'], { input: `SELECT length('${'y'.repeat(300_000)}');\n` });
    expect(ok.stdout.trim()).toBe('300000');
  });

  it('extended protocol: the error comes at Execute, the batch is skipped to Sync, a transaction is aborted like on any error', async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: w.port,
      database: 'pg',
      user: 'alice',
      ssl: { ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: 'localhost' },
    });
    await c.connect();
    try {
      const e1 = await c.query({ text: 'UPDATE guarded SET v = $1', values: ['zzz'] }).catch((e) => e);
      expect(e1).toMatchObject({ code: '42501', message: expect.stringContaining('guardrail "no-drops"') });
      // A named prepared statement stays refused on every execution.
      for (let i = 0; i < 2; i++) {
        const e = await c.query({ name: 'wipe', text: 'DELETE FROM guarded', values: [] }).catch((x) => x);
        expect(e.code).toBe('42501');
      }
      expect((await c.query({ text: 'SELECT count(*)::int AS n FROM guarded WHERE id > $1', values: [0] })).rows).toEqual([{ n: 2 }]);
      await c.query('BEGIN');
      await c.query({ text: 'INSERT INTO guarded VALUES ($1, $2)', values: [9, 'nine'] });
      expect((await c.query({ text: 'TRUNCATE guarded', values: [] }).catch((x) => x)).code).toBe('42501');
      expect((await c.query('SELECT 1').catch((x) => x)).code).toBe('25P02'); // in failed transaction, as PostgreSQL says
      await c.query('ROLLBACK');
      expect((await c.query('SELECT count(*)::int AS n FROM guarded')).rows).toEqual([{ n: 2 }]);
    } finally {
      await c.end();
    }
    expect(w.pg.logs()).not.toMatch(/UPDATE guarded SET v = \$1|DELETE FROM guarded$|TRUNCATE guarded/m);
    await w.tg.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.protocol === 'extended' && e.details?.statement === 'wipe');
  });

  it('counts decisions in vigil_guardrail_decisions_total on GET /metrics', async () => {
    const root = await w.tg.issue({ user: 'root', roles: ['admin'] });
    const text = await new Promise<string>((resolve, reject) => {
      const req = https.request(`https://127.0.0.1:${w.tg.ports.api}/metrics`, { ca: fs.readFileSync(root.ca), cert: fs.readFileSync(root.crt), key: fs.readFileSync(root.key), agent: false }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on('error', reject);
      req.end();
    });
    expect(text).toContain('# TYPE vigil_guardrail_decisions_total counter');
    const block = /vigil_guardrail_decisions_total\{protocol="postgres",decision="block",rule="no-drops"\} (\d+)/.exec(text);
    expect(Number(block?.[1])).toBeGreaterThanOrEqual(10);
    expect(text).toMatch(/vigil_guardrail_decisions_total\{protocol="postgres",decision="allow",rule=""\} [1-9]/);
  });
});
