import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { describe, it, expect, afterAll } from 'vitest';
import { startTestGateway } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startPostgres, clientEnv, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, secretsDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import { splitStatements } from '../../proxies/postgres/sql.ts';
import { run, serverStatements, STATEMENT_LOG } from './helpers.ts';

/**
 * kill -9 of the gateway under pgbench load, five times per durability mode, with the server's
 * statement log as the oracle. strict: every statement PostgreSQL executed is in the audit log (its
 * intent record at least). batched: the ones missing are the last moments before the kill (the records
 * of the commit window in progress, and the statements still running).
 */
const ROUNDS = 5;
const BATCH_WINDOW_MS = 25;

let pg: PostgresHandle;
let gp: GatewayProcess | undefined;
const base = tempDir('vigil-crash-');
afterAll(async () => {
  await gp?.kill('SIGKILL');
  await pg?.stop();
  fs.rmSync(base, { recursive: true, force: true });
});

/** Server statements (as vigil cuts simple queries) for an application, with their log time. */
function executed(app: string): { sql: string; at: number }[] {
  return serverStatements(pg, 'scram_user', (l) => l.application_name === `alice via ${app}`).flatMap((s) =>
    (s.kind === 'execute' ? [s.sql] : splitStatements(s.sql)).map((sql) => ({ sql, at: s.at })),
  );
}

describe('postgres proxy: gateway killed with SIGKILL under pgbench load', () => {
  it(`strict loses nothing; batched loses at most the last commit window (${ROUNDS} kills each)`, async () => {
    pg = await startPostgres({ conf: STATEMENT_LOG });
    const secret = secretsDir(base)('scram', PASSWORDS.scram_user);
    const doc = {
      data_dir: path.join(base, 'data'),
      api: { listen: '127.0.0.1:0' },
      ssh: { listen: '127.0.0.1:0' },
      mysql: { listen: '127.0.0.1:0' },
      postgres: { listen: '127.0.0.1:0' },
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret } }],
      roles: [{ name: 'dba', targets: ['pg'] }],
      certs: { clock_skew: 0 },
    };
    // Credentials and pgbench tables, with an in-process gateway on the same data dir.
    const tg = await startTestGateway(doc, base);
    const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
    const conn = (port: number) => `host=127.0.0.1 port=${port} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
    const init = await run('pgbench', ['-i', '-s', '1', '-q', conn(tg.ports.postgres)], undefined, {}, 60_000);
    expect(init.code, init.stderr).toBe(0);
    await tg.stop();

    const kills: { mode: string; app: string; at: number }[] = [];
    for (const mode of ['strict', 'batched'] as const) {
      for (let r = 0; r < ROUNDS; r++) {
        const app = `crash-${mode}-${r}`;
        gp = await startGatewayProcess({ ...doc, audit: { durability: mode, background_commit_window: `${BATCH_WINDOW_MS}ms` } }, base);
        const bench = spawn('pgbench', ['-n', '-M', r % 2 ? 'prepared' : 'simple', '-c', '4', '-T', '30', conn(gp.ports.postgres)], { env: clientEnv({ PGAPPNAME: app }), stdio: 'ignore' });
        const benchExit = new Promise((res) => bench.on('close', res));
        // Under load: all four clients connected and statements flowing.
        await waitFor(() => Number(pg.psql(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'alice via ${app}'`)) === 4, 15_000, `${app} connected`);
        await new Promise((res) => setTimeout(res, 600));
        const at = Date.now();
        await gp.kill('SIGKILL');
        kills.push({ mode, app, at });
        // Hang guard: every client notices the dead gateway.
        await Promise.race([benchExit, new Promise((_, rej) => setTimeout(() => rej(new Error(`${app}: pgbench still running`)), 10_000))]);
      }
    }
    // Restart once more: the writer recovers the log the last kill left behind; then read it.
    gp = await startGatewayProcess(doc, base);
    await gp.stop();
    const { records } = await searchAuditLog(path.join(base, 'data', 'audit'));
    const sessionsOf = new Map<string, string>();
    for (const { event: e } of records) {
      if (e.type === 'session.start') sessionsOf.set(e.session_id!, String((e.details.params as Record<string, string>)?.application_name));
    }

    const rows: string[] = [];
    for (const k of kills) {
      const recorded = new Map<string, { query: number; start: number }>();
      for (const { event: e } of records) {
        if ((e.type !== 'db.query' && e.type !== 'db.query.start') || sessionsOf.get(e.session_id!) !== k.app) continue;
        const c = recorded.get(String(e.details.sql)) ?? { query: 0, start: 0 };
        if (e.type === 'db.query') c.query++;
        else c.start++;
        recorded.set(String(e.details.sql), c);
      }
      // A statement is in the log if its record or its intent is (the later instances are the missing ones).
      const server = executed(k.app);
      const seen = new Map<string, number>();
      const missing: { sql: string; at: number }[] = [];
      for (const s of server) {
        const n = (seen.get(s.sql) ?? 0) + 1;
        seen.set(s.sql, n);
        const c = recorded.get(s.sql);
        if (!c || n > Math.max(c.query, c.start)) missing.push(s);
      }
      const oldest = missing.length ? Math.max(...missing.map((m) => k.at - m.at)) : 0;
      rows.push(`${k.app.padEnd(17)} ${String(server.length).padStart(8)} ${String(missing.length).padStart(8)} ${String(oldest).padStart(10)}`);
      expect(server.length, k.app).toBeGreaterThan(20);
      if (k.mode === 'strict') expect(missing, k.app).toEqual([]);
      // Batched: only the statements of the last moments before the kill (commit window, plus the time
      // a commit in progress takes and the statements still running; a loaded machine stretches both).
      else expect(oldest, `${k.app}: ${JSON.stringify(missing.slice(0, 3))}`).toBeLessThan(BATCH_WINDOW_MS + 500);
    }
    console.log(['round             executed  missing  oldest-ms', ...rows].join('\n'));
  }, 300_000);
});
