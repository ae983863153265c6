import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld as startPgWorld, type PgWorld } from '../postgres/helpers.ts';
import { startWorld as startMyWorld, type MyWorld } from '../mysql/helpers.ts';
import { enableGeneralLog } from '../mysql/general-log.ts';
import { startWorld as startSshWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Statements that do what a configured kind forbids under another spelling, through the stock clients
 * against the real servers: each must be refused before it reaches the server (PostgreSQL's
 * log_statement = all, MariaDB's general log, a ForceCommand that only writes down what reached sshd),
 * and the rows must still be there.
 */

const KINDS = ['drop', 'truncate', 'delete_without_where', 'update_without_where'];

describe('postgres: MERGE over every row', () => {
  let w: PgWorld;
  beforeAll(async () => {
    w = await startPgWorld({ guardrails: [{ name: 'no-wipes', targets: ['pg'], roles: ['*'], sql: { block: KINDS, on_unparsable: 'refuse' } }] }, { pgConf: ['log_statement = all'] });
    w.pg.psql('CREATE TABLE merged (id int, v text); INSERT INTO merged VALUES (1, $$one$$), (2, $$two$$); GRANT ALL ON merged TO scram_user;');
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('MERGE … ON true WHEN MATCHED THEN DELETE / UPDATE is a DELETE / UPDATE without WHERE', async () => {
    const cases: [string, string][] = [
      ['MERGE INTO merged m USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE', 'DELETE without WHERE'],
      ["MERGE INTO merged m USING (SELECT 1) s ON TRUE WHEN MATCHED THEN UPDATE SET v = 'wiped'", 'UPDATE without WHERE'],
    ];
    for (const [sql, reason] of cases) {
      const r = await w.psql(['-c', sql]);
      expect(r.stderr, sql).toContain(`vigil guardrail "no-wipes" refused this statement (${reason})`);
      expect(w.pg.logs(), sql).not.toContain(sql);
    }
    expect(w.pg.psql("SELECT count(*) FROM merged WHERE v <> 'wiped'")).toBe('2');
    // A MERGE whose rows are chosen by its join condition is a DELETE with a WHERE: it runs.
    const chosen = 'MERGE INTO merged m USING (SELECT 2 AS id) s ON m.id = s.id WHEN MATCHED THEN DELETE';
    const ok = await w.psql(['-c', chosen]);
    expect(ok.stderr).not.toContain('vigil guardrail');
    expect(w.pg.logs()).toContain(chosen);
    expect(w.pg.psql('SELECT count(*) FROM merged')).toBe('1');
  });
});

describe('mysql: WHERE TRUE, WHERE 1 and partition maintenance', () => {
  let w: MyWorld;
  let generalLog: string;
  beforeAll(async () => {
    w = await startMyWorld({ guardrails: [{ name: 'no-wipes', targets: ['db'], roles: ['*'], sql: { block: KINDS, on_unparsable: 'refuse' } }] });
    await w.db.query('CREATE TABLE other.kept (id INT, v TEXT); INSERT INTO other.kept VALUES (1, "one"), (2, "two")');
    await w.db.query('CREATE TABLE other.parted (id INT) PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10), PARTITION p1 VALUES LESS THAN MAXVALUE); INSERT INTO other.parted VALUES (1), (20)');
    generalLog = await enableGeneralLog(w.db);
  }, 120_000);
  afterAll(async () => {
    await w?.stop();
  });
  const logged = () => fs.readFileSync(generalLog, 'utf8');

  const refusedUnseen = async (cases: [string, string][]) => {
    for (const [sql, reason] of cases) {
      const r = await w.cli(['--user=db', '-e', sql]);
      expect(r.stderr, sql).toContain(`vigil guardrail "no-wipes" refused this statement (${reason})`);
      expect(logged(), sql).not.toContain(sql);
    }
  };

  it('WHERE TRUE and WHERE 1 count as no WHERE (as WHERE true does on Postgres)', async () => {
    await refusedUnseen([
      ['DELETE FROM other.kept WHERE TRUE', 'DELETE without WHERE'],
      ['DELETE FROM other.kept WHERE 1', 'DELETE without WHERE'],
      ["UPDATE other.kept SET v = 'wiped' WHERE true", 'UPDATE without WHERE'],
    ]);
    expect((await w.db.query("SELECT COUNT(*) FROM other.kept WHERE v <> 'wiped'"))[0]).toEqual(['2']);
    // A WHERE that chooses rows still runs.
    const chosen = 'DELETE FROM other.kept WHERE id = 2';
    const ok = await w.cli(['--user=db', '-e', chosen]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(logged()).toContain(chosen);
    expect((await w.db.query('SELECT COUNT(*) FROM other.kept'))[0]).toEqual(['1']);
  });

  it('ALTER TABLE … TRUNCATE PARTITION ALL is a TRUNCATE, DROP PARTITION a DROP', async () => {
    await refusedUnseen([
      ['ALTER TABLE other.parted TRUNCATE PARTITION ALL', 'TRUNCATE'],
      ['ALTER TABLE other.parted DROP PARTITION p0', 'DROP'],
    ]);
    expect((await w.db.query('SELECT COUNT(*) FROM other.parted'))[0]).toEqual(['2']);
    // Other partition maintenance is no TRUNCATE or DROP: it runs.
    const analyse = 'ALTER TABLE other.parted ANALYZE PARTITION p0';
    const ok = await w.cli(['--user=db', '-e', analyse]);
    expect(ok.stderr).not.toContain('vigil guardrail');
    expect(logged()).toContain(analyse);
  });
});

describe('ssh: abbreviated long options', () => {
  let w: SshWorld;
  let oncall: IssuedFiles;
  let log: string;
  beforeAll(async () => {
    const dir = tempDir('vigil-guard-review-ssh-');
    fs.chmodSync(dir, 0o755);
    log = path.join(dir, 'reached.log');
    const wrapper = path.join(dir, 'log-only.sh');
    // Runs nothing: a guardrail bug can never run `rm -rf /` on this machine.
    fs.writeFileSync(wrapper, ['#!/bin/sh', `printf '%s' "$SSH_ORIGINAL_COMMAND" | base64 -w0 >> ${log}`, `echo >> ${log}`, 'echo reached-target', ''].join('\n'), { mode: 0o755 });
    w = await startSshWorld({
      sshd: { overrides: { ForceCommand: wrapper } },
      config: {
        roles: [{ name: 'oncall', targets: ['*'], logins: ['*'] }],
        guardrails: [{ name: 'careful-shell', targets: ['*'], roles: ['oncall'], ssh: { block_commands: ['rm -rf /', 'rm --no-preserve-root *'] } }],
      },
    });
    oncall = await w.issue({ user: 'olga', roles: ['oncall'] });
  }, 60_000);
  afterAll(async () => {
    await w?.stop();
  });
  const reached = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'base64').toString('utf8')) : []);
  const dest = () => `${w.sshd.user}@web1@127.0.0.1`;

  it('rm --rec --forc / is rm -rf / (getopt_long takes unambiguous prefixes), and --no-pres is --no-preserve-root', async () => {
    // The real rm reads the prefixes as the options: the abbreviated spelling removes a tree.
    const tree = tempDir('vigil-guard-review-rm-');
    fs.mkdirSync(path.join(tree, 'sub'));
    execFileSync('rm', ['--rec', '--forc', tree]);
    expect(fs.existsSync(tree)).toBe(false);

    const blocked = ['rm --rec --forc /', 'rm --r --f /', 'rm -r --fo /', 'rm --no-pres -rf /tmp/vigil-none'];
    for (const command of blocked) {
      const r = await w.run('ssh', [...w.opts(oncall), dest(), command]);
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toContain('guardrail "careful-shell"');
    }
    const allowed = 'rm --rec --forc /tmp/vigil-guard-nothing';
    const ok = await w.run('ssh', [...w.opts(oncall), dest(), allowed]);
    expect(ok.code, ok.stderr).toBe(0);
    const got = reached();
    for (const c of blocked) expect(got, c).not.toContain(c);
    expect(got).toContain(allowed);
  });
});
