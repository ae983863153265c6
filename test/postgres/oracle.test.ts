import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, run, RawClient, serverLog, serverStatements, STATEMENT_LOG, type PgWorld } from './helpers.ts';
import { msg, parse, bind, exec, sync } from './wire.ts';
import { splitStatements } from '../../proxies/postgres/sql.ts';
import { clientEnv, PG_BIN } from '../support/postgres.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * Completeness oracle: PostgreSQL logs every statement it receives (log_statement = 'all', jsonlog);
 * for each workload run through vigil, every one of them must have a db.query event with the same text
 * (a simple query string counts as its statements, cut by vigil's lexer). Workloads are told apart by
 * application_name, which both the server log and session.start carry.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({ postgres: { listen: '127.0.0.1:0', max_message_size: '1MiB' } }, { pgConf: STATEMENT_LOG });
});
afterAll(async () => {
  await w?.stop();
});


/**
 * What the server logged for an application, one group per received message: a simple query's
 * statements (cut by vigil's lexer) or an executed statement's text. `errored`: the server logged an
 * ERROR for that very query string, so its statements after the failing one were never run.
 */
function serverGroups(app: string): { pieces: string[]; errored: boolean }[] {
  const log = serverLog(w.pg).filter((l) => l.user === 'scram_user' && l.application_name === `alice via ${app}`);
  const errors = new Set(log.filter((l) => l.error_severity === 'ERROR' && l.statement).map((l) => `${l.pid}\0${l.statement}`));
  return serverStatements(w.pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).map((s) => {
    if (s.kind === 'execute') return { pieces: [s.sql], errored: false };
    const parts = splitStatements(s.sql);
    return { pieces: parts.length ? parts : [s.sql], errored: errors.has(`${s.pid}\0${s.sql}`) };
  });
}

const serverTexts = (app: string): string[] => serverGroups(app).flatMap((g) => g.pieces);

function appEvents(app: string) {
  const sessions = new Set(w.tg.events.filter((e) => e.type === 'session.start' && (e.details.params as Record<string, string>)?.application_name === app).map((e) => e.session_id));
  return w.tg.events.filter((e) => e.type === 'db.query' && sessions.has(e.session_id));
}
const eventTexts = (app: string): string[] => appEvents(app).map((e) => String(e.details.sql));

/**
 * Server statements with no event of the same text (multiset difference), and how many statements of
 * a failed simple query the server skipped (after the statement whose event is the failure).
 */
function compare(app: string): { missing: string[]; skipped: number } {
  const left = new Map<string, string[]>();
  for (const e of appEvents(app)) {
    const k = String(e.details.sql);
    left.set(k, [...(left.get(k) ?? []), e.outcome]);
  }
  const missing: string[] = [];
  let skipped = 0;
  for (const g of serverGroups(app)) {
    for (let i = 0; i < g.pieces.length; i++) {
      const outcome = left.get(g.pieces[i])?.shift();
      if (outcome === undefined) missing.push(g.pieces[i]);
      else if (outcome === 'failure' && g.errored) {
        skipped += g.pieces.length - i - 1;
        break;
      }
    }
  }
  return { missing, skipped };
}
const missing = (app: string) => compare(app).missing;

const workloads: string[] = [];
const env = (app: string) => ({ PGAPPNAME: app });

/** Start psql running `sql`, wait until the server runs it, do `fail`, then psql must exit (hang guard). */
async function psqlDuring(app: string, sql: string, fail: (backendPid: number, psql: import('node:child_process').ChildProcess) => void): Promise<string> {
  workloads.push(app);
  const child = spawn('psql', ['-X', '-d', w.conn(), '-c', sql], { env: clientEnv(env(app)), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exit = new Promise<number | null>((r) => child.on('close', r));
  const pid = await waitFor(() => Number(w.pg.psql(`SELECT pid FROM pg_stat_activity WHERE application_name = 'alice via ${app}' AND state = 'active'`)) || undefined, 30_000, `${app} running`);
  fail(pid, child);
  const code = await Promise.race([exit, new Promise((r) => setTimeout(() => r('psql still connected'), 5000))]);
  child.kill('SIGKILL');
  expect(code, `${app}: ${stderr}`).not.toBe('psql still connected');
  expect(code).not.toBe(0);
  return stderr;
}

describe('postgres proxy: completeness oracle (server statement log vs vigil events)', () => {
  it('every statement the server logged has a db.query event, for every workload', async () => {
    const dir = path.join(w.base, 'oracle');
    fs.mkdirSync(dir, { recursive: true });

    workloads.push('script');
    const script = path.join(dir, 'script.sql');
    fs.writeFileSync(script, [
      'CREATE TABLE oracle_t (id int PRIMARY KEY, note text);',
      "INSERT INTO oracle_t VALUES (1, 'one;with;semicolons'), (2, $$dollar ; quoted$$);",
      '-- a comment line',
      'UPDATE oracle_t SET note = note || \'!\'',
      '  WHERE id = 1;',
      'BEGIN;',
      'DELETE FROM oracle_t WHERE id = 2;',
      'ROLLBACK;',
      'SELECT count(*) FROM oracle_t;',
      '',
    ].join('\n'));
    const s = await w.psql(['-q', '-f', script], { env: env('script') });
    expect(s.code, s.stderr).toBe(0);

    workloads.push('multi');
    const m = await w.psql(['-qAt', '-c', "SELECT 1; SELECT 'a;b'; INSERT INTO oracle_t VALUES (3, 'x'); SELECT 1/0; SELECT 'not run'"], { env: env('multi') });
    expect(m.stderr).toMatch(/division by zero/);

    workloads.push('copy');
    const csv = path.join(dir, 'in.csv');
    fs.writeFileSync(csv, Array.from({ length: 500 }, (_, i) => `${i + 10},row ${i}`).join('\n') + '\n');
    const ci = await w.psql(['-q', '-c', `\\copy oracle_t FROM '${csv}' WITH (FORMAT csv)`], { env: env('copy') });
    expect(ci.code, ci.stderr).toBe(0);
    const co = await w.psql(['-qAt', '-c', 'COPY oracle_t TO STDOUT'], { env: env('copy') });
    expect(co.stdout.split('\n').filter(Boolean).length).toBe(502);

    workloads.push('pgbench-init');
    const init = await run('pgbench', ['-i', '-s', '1', '-q', w.conn()], undefined, env('pgbench-init'), 120_000);
    expect(init.code, init.stderr).toBe(0);
    for (const mode of ['simple', 'extended', 'prepared']) {
      const app = `pgbench-${mode}`;
      workloads.push(app);
      const r = await run('pgbench', ['-M', mode, '-c', '2', '-t', '200', '-n', w.conn()], undefined, env(app), 120_000);
      expect(r.code, r.stderr).toBe(0);
    }

    await psqlDuring('psql-kill-9', 'SELECT pg_sleep(30)', (_pid, psql) => psql.kill('SIGKILL'));
    workloads.push('oversized');
    const big = await w.psql(['-qAt', '-c', "SELECT repeat('x', 2000000)"], { env: env('oversized') });
    expect(big.stderr).toMatch(/max_message_size/);

    workloads.push('refused-parse');
    const c = await RawClient.connect(w, 'pg', [['application_name', 'refused-parse']]);
    await c.roundTrip(Buffer.concat([parse('a', 'SELECT 1 AS a'), sync]));
    await c.roundTrip(Buffer.concat([parse('a', 'SELECT 2 AS b'), bind('', 'a'), exec(''), sync]));
    await c.roundTrip(Buffer.concat([parse('x', 'SELEC 1'), parse('y', 'SELECT 3'), sync]));
    await c.roundTrip(Buffer.concat([bind('', 'a'), exec(''), bind('', 'y'), exec(''), sync]));
    c.close();

    await waitFor(() => w.tg.gw.services.sessions.size === 0, 15_000, 'all sessions to end');
    // The server's log collector and vigil's group commit both write asynchronously: give them a moment.
    await waitFor(() => workloads.every((app) => missing(app).length === 0 && serverTexts(app).length > 0), 10_000, 'events for every logged statement').catch(() => {});
    const final = workloads.map((app) => ({ workload: app, server: serverTexts(app).length, events: eventTexts(app).length, missing: missing(app) }));
    console.log(
      [
        'workload             server  events  missing  skipped-after-error',
        ...final.map((r) => `${r.workload.padEnd(20)} ${String(r.server).padStart(6)} ${String(r.events).padStart(7)} ${String(r.missing.length).padStart(8)} ${String(compare(r.workload).skipped).padStart(8)}`),
      ].join('\n'),
    );
    for (const r of final) {
      expect(r.server, r.workload).toBeGreaterThan(0);
      expect(r.missing, r.workload).toEqual([]);
    }
  }, 180_000);

  it('closes every client socket when the backend fails (terminate, kill -9, immediate stop), and records the statement', async () => {
    const t = await psqlDuring('pg-terminate', 'SELECT pg_sleep(31)', (pid) => w.pg.psql(`SELECT pg_terminate_backend(${pid})`));
    expect(t).toMatch(/terminat/);
    await psqlDuring('backend-kill-9', 'SELECT pg_sleep(32)', (pid) => process.kill(pid, 'SIGKILL'));
    // The postmaster restarts its backends after a crash: wait until it serves again.
    await waitFor(() => w.pg.psql('SELECT 1') === '1', 30_000, 'postgres to recover');
    await psqlDuring('immediate-stop', 'SELECT pg_sleep(33)', () => {
      const pgctl = [`${PG_BIN}/pg_ctl`, 'stop', '-D', path.join(w.pg.dir, 'data'), '-m', 'immediate'];
      if (process.getuid?.() === 0) execFileSync('runuser', ['-u', 'postgres', '--', ...pgctl], { stdio: 'ignore' });
      else execFileSync(pgctl[0], pgctl.slice(1), { stdio: 'ignore' });
    });
    await waitFor(() => w.tg.gw.services.sessions.size === 0, 10_000, 'all sessions to end');
    for (const app of ['pg-terminate', 'backend-kill-9', 'immediate-stop']) {
      // Events reach subscribers at the writer's next group commit.
      const evs = await waitFor(() => (eventTexts(app).length ? eventTexts(app) : undefined), 5000, `${app} event`).catch(() => eventTexts(app));
      expect(evs, app).toEqual([expect.stringMatching(/^SELECT pg_sleep\(3\d\)$/)]);
      expect(missing(app), app).toEqual([]);
    }
  }, 180_000);
});
