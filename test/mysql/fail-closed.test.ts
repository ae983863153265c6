import { describe, it, expect, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { startWorld, type MyWorld } from './helpers.ts';
import { enableGeneralLog, readGeneralLog } from './general-log.ts';
import { segmentName } from '../../recorder/audit/record.ts';
import { waitFor } from '../support/tmp.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Fail closed (#14): a statement whose record cannot be written never reaches the backend — the client
 * gets a MySQL error and the session ends (audit_unavailable). Strict durability: the statement's intent
 * is durable before its first byte is forwarded.
 */
const detail = (e: AuditEvent | undefined) => e?.details as Record<string, any>;

/** The stock mariadb client reading statements from a pipe: an interactive session kept open. */
function liveClient(w: MyWorld) {
  const c = spawn('mariadb', ['--no-defaults', '--host=127.0.0.1', `--port=${w.port}`, '--user=db', '--batch', '--unbuffered', `--ssl-ca=${w.alice.ca}`, `--ssl-cert=${w.alice.crt}`, `--ssl-key=${w.alice.key}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  c.stdout.on('data', (d) => (stdout += d));
  c.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((r) => c.on('exit', r));
  return {
    send: (sql: string) => c.stdin.write(`${sql}\n`),
    end: () => c.stdin.end(),
    out: () => stdout,
    err: () => stderr,
    exited,
    kill: () => c.kill('SIGKILL'),
  };
}

const worlds: MyWorld[] = [];
afterAll(async () => {
  for (const w of worlds) await w.stop();
});

describe('mysql proxy fails closed', () => {
  it('an idle live session whose next statement hits an unwritable audit log gets an error; the statement never ran', async () => {
    const w = await startWorld({ audit: { segment_max_bytes: 4096 } });
    worlds.push(w);
    const generalLog = await enableGeneralLog(w.db);
    const live = liveClient(w);
    try {
      live.send("SELECT 'live-first';");
      await waitFor(() => live.out().includes('live-first'), 15_000, 'the first statement');
      // Every segment the writer could rotate to next is a link to a full device.
      const auditDir = path.join(w.tg.dataDir, 'audit');
      for (let seq = 2; seq < 2000; seq++) {
        const p = path.join(auditDir, segmentName(seq, new Date()));
        if (!fs.existsSync(p)) fs.symlinkSync('/dev/full', p);
      }
      await waitFor(async () => {
        await w.cli(['--user=db', '-e', `SELECT '${'x'.repeat(2000)}'`]);
        return !w.tg.gw.services.events.healthy;
      }, 30_000, 'the audit log to fail');

      live.send("SELECT 'never-ran-marker';");
      live.end();
      const code = await live.exited;
      expect(code).not.toBe(0);
      expect(live.err()).toMatch(/audit log cannot be written/);
      expect(live.out()).not.toContain('never-ran-marker');
      const lines = readGeneralLog(generalLog);
      expect(lines.some((l) => l.text.includes('live-first'))).toBe(true);
      expect(lines.some((l) => l.text.includes('never-ran-marker'))).toBe(false);
      await waitFor(() => w.tg.gw.services.sessions.size === 0, 5000, 'the session to end');
    } finally {
      live.kill();
    }
  }, 90_000);

  it('strict durability: the intent is durable before the statement reaches the backend', async () => {
    const w = await startWorld({ audit: { durability: 'strict' } });
    worlds.push(w);
    const generalLog = await enableGeneralLog(w.db);
    const events = w.tg.gw.services.events;
    // Hold the durability promise of the marked statement: vigil must hold the statement with it.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let intentDurable = false;
    const original = events.beforeForward.bind(events);
    events.beforeForward = (input, onFailure) => {
      const durable = original(input, onFailure);
      if (!durable || !String(input.details?.query).includes('strict-marker')) return durable;
      return durable.then(() => {
        intentDurable = true;
        return gate;
      });
    };
    const run = w.cli(['--user=db', '-e', "SELECT 'strict-marker' AS m"]);
    await waitFor(() => intentDurable, 15_000, 'the intent to be durable');
    const intent = w.tg.events.find((e) => e.type === 'db.query.start' && detail(e).query === "SELECT 'strict-marker' AS m")!;
    expect(intent.outcome).toBe('unknown');
    await new Promise((r) => setTimeout(r, 300));
    expect(readGeneralLog(generalLog).some((l) => l.text.includes('strict-marker'))).toBe(false);
    release();
    const r = await run;
    expect(r.stdout).toBe('m\nstrict-marker\n');
    expect(readGeneralLog(generalLog).some((l) => l.text.includes('strict-marker'))).toBe(true);
    const done = await w.tg.waitForEvent((e) => e.type === 'db.query' && detail(e).query === "SELECT 'strict-marker' AS m");
    expect(w.tg.events.indexOf(intent)).toBeLessThan(w.tg.events.indexOf(done));
    // The intent stands in for the long-running start event: one start per statement.
    expect(w.tg.events.filter((e) => e.type === 'db.query.start' && e.session_id === done.session_id).length).toBe(1);
  }, 90_000);
});
