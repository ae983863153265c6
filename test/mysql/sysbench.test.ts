import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type MyWorld } from './helpers.ts';
import { sysbench, sysbenchCertDir } from './sysbench.ts';

let w: MyWorld;
beforeAll(async () => {
  w = await startWorld();
  await w.db.query('CREATE DATABASE sbtest');
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

describe('sysbench through vigil', () => {
  it('prepares and runs oltp_read_only with a vigil client certificate, every statement recorded', async () => {
    const certDir = sysbenchCertDir(w.alice, w.base);
    const common = { test: 'oltp_read_only', port: w.port, user: 'db', db: 'sbtest', certDir, tableSize: 1000 } as const;
    await sysbench({ ...common, command: 'prepare' });
    expect((await w.db.query('SELECT COUNT(*) FROM sbtest.sbtest1'))[0]![0]).toBe('1000');
    const run = await sysbench({ ...common, command: 'run', time: 2, threads: 2 });
    expect(run.tps).toBeGreaterThan(0);
    expect(run.errors).toBe(0);
    const executes = w.queries((e) => e.details.command === 'COM_STMT_EXECUTE' && String(e.details.query).startsWith('SELECT c FROM sbtest1 WHERE id=?'));
    expect(executes.length).toBeGreaterThan(0);
    const p = executes[0]!.details.params as number[];
    expect(p).toHaveLength(1);
    expect(p[0]).toBeGreaterThanOrEqual(1);
    expect(executes[0]!.details.rows_returned).toBe(1);
  }, 60_000);

  it('a string parameter bound by sysbench is recorded as text when UTF-8, and as hex when not', async () => {
    const certDir = sysbenchCertDir(w.alice, w.base);
    // sysbench's own prepared-statement API: two VARCHAR parameters, one a literal U+FFFD, one a U+FFFD
    // next to a byte that is not UTF-8 (Lua's decimal escapes are bytes).
    const script = path.join(certDir, 'strings.lua');
    fs.writeFileSync(script, [
      'function thread_init()',
      '  con = sysbench.sql.driver():connect()',
      "  stmt = con:prepare('SELECT LENGTH(?) + LENGTH(?)')",
      '  a = stmt:bind_create(sysbench.sql.type.VARCHAR, 16)',
      '  b = stmt:bind_create(sysbench.sql.type.VARCHAR, 16)',
      '  stmt:bind_param(a, b)',
      'end',
      'function event()',
      "  a:set('ok \\239\\191\\189')",
      "  b:set('\\239\\191\\189\\255A')",
      '  stmt:execute()',
      'end',
      'function thread_done()',
      '  stmt:close()',
      '  con:disconnect()',
      'end',
    ].join('\n'));
    await sysbench({ test: script, command: 'run', port: w.port, user: 'db', db: 'sbtest', certDir, extra: ['--events=1'] });
    const ev = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.command === 'COM_STMT_EXECUTE' && String(e.details.query).startsWith('SELECT LENGTH(?) + LENGTH(?)'));
    expect(ev.details.params).toEqual(['ok \ufffd', { hex: 'efbfbdff41', length: 5 }]);
  }, 60_000);
});
