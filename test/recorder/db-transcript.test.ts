import fs from 'node:fs';
import pg from 'pg';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type PgWorld } from '../postgres/helpers.ts';
import { waitFor } from '../support/tmp.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import { createEvent, type AuditEvent } from '../../src/events/envelope.ts';
import { buildTranscript, formatTranscript, type TranscriptEntry } from '../../recorder/recordings/replay.ts';
import { runCliCaptured } from '../support/cli.ts';

const cli = (args: string[]) => runCliCaptured(args);

let w: PgWorld;
beforeAll(async () => {
  w = await startWorld();
  w.pg.psql('CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text); ALTER TABLE notes OWNER TO scram_user');
});
afterAll(async () => {
  await w?.stop();
});

/** The session's transcript once its session.end is in the audit log on disk (the CLI reads the files). */
async function replayWhenEnded(sessionId: string, json = false): Promise<string> {
  return waitFor(async () => {
    const r = await cli(['replay', sessionId, '--data', w.tg.dataDir, ...(json ? ['--json'] : [])]);
    if (r.code !== 0) throw new Error(r.err);
    return (json ? r.out.includes('"kind":"session"') && r.out.includes('"ended"') : r.out.includes('-- ended')) ? r.out : undefined;
  }, 15_000, 'the session transcript with its end');
}

describe('vigil replay: database session transcripts', () => {
  it('a real psql session through the gateway replays as a psql-style log with timing, outcome and rows', async () => {
    const script = [
      "INSERT INTO notes VALUES (1, 'first'), (2, 'second');",
      'SELECT id, body',
      '  FROM notes',
      '  WHERE id > 0',
      '  ORDER BY id;',
      'SELECT 1/0;',
      "UPDATE notes SET body = 'x\x1b[31mred' WHERE id = 2;",
      '',
    ].join('\n');
    const r = await w.psql(['-v', 'ON_ERROR_STOP=0', '-f', '-'], { input: script });
    expect(r.stderr).toContain('division by zero');
    const marker = await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === 'SELECT 1/0');
    const sessionId = marker.session_id!;
    const start = w.tg.events.find((e) => e.type === 'session.start' && e.session_id === sessionId)!;
    const text = await replayWhenEnded(sessionId);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^-- postgres session ${sessionId}: alice \\(dba\\) -> pg \\(127\\.0\\.0\\.1:\\d+, login scram_user, database app\\) from 127\\.0\\.0\\.1:\\d+$`));
    expect(lines[1]).toBe(`-- started ${start.time}`);
    const at = (needle: string) => lines.findIndex((l) => l.includes(needle));
    // Each statement: a stamp (wall clock, offset from the session start), the prompt, the text as sent…
    const insert = at("INSERT INTO notes VALUES (1, 'first'), (2, 'second');");
    expect(lines[insert]).toMatch(/^\[\d\d:\d\d:\d\d\.\d{6} \+\d+\.\d{3}s\] app=> INSERT INTO notes/);
    // …then its outcome, rows and duration.
    expect(lines[insert + 1]).toMatch(/^ +-- INSERT, 2 rows affected \(\d+\.\d{3} ms\)/);
    // A multi-line statement keeps its lines, continued as psql shows them.
    const select = at('app=> SELECT id, body');
    expect(lines[select + 1]).toMatch(/^ +-> {3}FROM notes$/);
    expect(lines[select + 3]).toMatch(/^ +-> {3}ORDER BY id;$/);
    expect(lines[select + 4]).toMatch(/^ +-- SELECT, 2 rows \(\d+\.\d{3} ms\)/);
    const failed = at('app=> SELECT 1/0;');
    expect(lines[failed + 1]).toMatch(/^ +-- ERROR \(22012\): division by zero/);
    // Terminal control bytes in a statement are shown escaped, never sent to the terminal.
    expect(text).not.toContain('\x1b');
    expect(text).toContain("SET body = 'x\\x1b[31mred'");
    expect(lines[at("SET body = 'x")+ 1]).toMatch(/-- UPDATE, 1 row affected/);
    expect(lines.filter(Boolean).at(-1)).toMatch(/^-- ended \S+Z: client_closed, after .*; 4 statements, 1 failed$/);
    // Statements appear in the order they ran, with non-decreasing offsets.
    const offsets = lines.map((l) => /^\[[^\]]* \+(\d+\.\d{3})s\]/.exec(l)?.[1]).filter(Boolean).map(Number);
    expect(offsets).toHaveLength(4);
    expect([...offsets].sort((a, b) => a - b)).toEqual(offsets);
  });

  it('--json: one object per line with the session, then each statement with parameters (node-postgres, extended protocol)', async () => {
    const c = new pg.Client({
      host: '127.0.0.1', port: w.port, database: 'pg', user: 'alice',
      ssl: { ca: fs.readFileSync(w.alice.ca), cert: fs.readFileSync(w.alice.crt), key: fs.readFileSync(w.alice.key), servername: 'localhost' },
    });
    await c.connect();
    await c.query('SELECT body FROM notes WHERE id = $1 AND body <> $2', [1, "it's"]);
    await c.query({ name: 'by-id', text: 'SELECT body FROM notes WHERE id = $1', values: [2] });
    await c.query('SELECT nosuchcolumn FROM notes').catch(() => {});
    const marker = await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).includes('nosuchcolumn'));
    await c.end();
    const out = await replayWhenEnded(marker.session_id!, true);
    const rows = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(rows[0]).toMatchObject({ kind: 'session', session_id: marker.session_id, user: 'alice', target: 'pg', protocol: 'postgres', database: 'app', end_reason: 'client_closed' });
    const stmts = rows.slice(1) as unknown as TranscriptEntry[];
    const first = stmts.find((s) => s.sql.includes('body <> $2'))!;
    expect(first).toMatchObject({ kind: 'statement', params: ['1', "it's"], protocol: 'extended', outcome: 'success', command: 'SELECT', rows_returned: 1, database: 'app' });
    expect(typeof first.duration_ms).toBe('number');
    expect(Date.parse(first.start)).toBeLessThanOrEqual(Date.parse(first.time));
    expect(stmts.find((s) => s.statement === 'by-id')).toMatchObject({ params: ['2'], rows_returned: 1 });
    expect(stmts.find((s) => s.sql.includes('nosuchcolumn'))).toMatchObject({ outcome: 'failure', error: { sqlstate: '42703' } });
    // And the human form shows the parameters as SQL literals.
    const text = await replayWhenEnded(marker.session_id!);
    expect(text).toContain("-- parameters: $1 = '1', $2 = 'it''s'");
    expect(text).toContain('-- prepared statement by-id (extended)');
  });

  it('an SSH session id still replays its recording (no transcript), and an unknown id is not found', async () => {
    const store = openRecordingStore(dataPaths(w.tg.dataDir).recordings);
    const rec = store.openAsciicast('S-ssh-replay', 0, { width: 80, height: 24, timestamp: 1 });
    rec.output('hello from the terminal\r\n');
    await rec.close();
    const played = await cli(['replay', 'S-ssh-replay', '--data', w.tg.dataDir, '--print']);
    // Written straight to the store here, so no recording.closed is in the log: replay says it cannot vouch for it.
    expect(played.err).toMatch(/^vigil: S-ssh-replay\/ch0\.cast: not verified: no recording\.stored event and no recording\.closed/);
    expect(played.out).toBe('hello from the terminal\n');
    const json = await cli(['replay', 'S-ssh-replay', '--data', w.tg.dataDir, '--json']);
    expect(json.code).toBe(2);
    expect(json.err).toContain('--json is for database sessions');
    const unknown = await cli(['replay', 'no-such-session', '--data', w.tg.dataDir]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.err).toContain('no recording for session no-such-session');
  });
});

describe('transcript building (MySQL shapes, outcomes, order)', () => {
  const base = { actor: { user: 'bob', roles: ['dev'] }, source: { ip: '10.0.0.5', port: 4000 }, target: { name: 'shop-db', protocol: 'mysql', host: 'db1', database: 'shop' }, session_id: 'S-my' };
  const at = (iso: string) => new Date(iso);
  it('orders statements by start time, renders MySQL errors and parameters, and marks unknown outcomes', () => {
    const events: AuditEvent[] = [
      createEvent({ ...base, type: 'session.start', outcome: 'success', time: at('2026-12-06T01:00:00.000Z'), details: {} }),
      // A long statement recorded after a short one that began later.
      createEvent({ ...base, type: 'db.query', outcome: 'success', time: at('2026-12-06T01:00:05.000Z'), details: { command: 'COM_QUERY', duration_ms: 4000, query: 'SELECT SLEEP(4)', rows_returned: 1 } }),
      createEvent({ ...base, type: 'db.query', outcome: 'failure', time: at('2026-12-06T01:00:02.000Z'), details: { command: 'COM_STMT_EXECUTE', duration_ms: 1.5, error: { code: 1146, message: "Table 'shop.nope' doesn't exist", sqlstate: '42S02' }, params: [7, null, 'a'], query: 'SELECT * FROM nope WHERE a = ? AND b = ? AND c = ?', statement_id: 3 } }),
      createEvent({ ...base, type: 'db.query', outcome: 'unknown', time: at('2026-12-06T01:00:09.000Z'), details: { command: 'COM_QUERY', duration_ms: 2000, query: 'UPDATE big SET x = 1', reason: 'client_gone' } }),
      createEvent({ ...base, type: 'db.cancel', outcome: 'failure', time: at('2026-12-06T01:00:09.500Z'), details: { command: 'COM_QUERY', query: 'KILL QUERY 9', reason: 'not_owner' } }),
      createEvent({ ...base, type: 'session.end', outcome: 'failure', time: at('2026-12-06T01:00:10.000Z'), details: { reason: 'client_gone', duration_ms: 10000 } }),
    ].map((e) => JSON.parse(JSON.stringify(e)) as AuditEvent);
    const t = buildTranscript('S-my', events.reverse())!;
    expect(t.entries.map((e) => e.sql)).toEqual(['SELECT SLEEP(4)', 'SELECT * FROM nope WHERE a = ? AND b = ? AND c = ?', 'UPDATE big SET x = 1', 'KILL QUERY 9']);
    expect(t.entries[0]).toMatchObject({ start: '2026-12-06T01:00:01.000000Z', offset_s: 1 });
    const text = formatTranscript(t);
    expect(text).toContain('mysql [shop]> SELECT SLEEP(4);');
    expect(text).toContain('-- 1 row in set (4.000 s)');
    expect(text).toContain("-- parameters: $1 = 7, $2 = NULL, $3 = 'a'");
    expect(text).toContain("-- ERROR 1146 (42S02): Table 'shop.nope' doesn't exist (1.500 ms)");
    expect(text).toContain('-- outcome unknown (the session ended while it ran) (2.000 s)  [reason=client_gone]');
    expect(text).toContain('-- cancel request (KILL QUERY 9): refused (not_owner)');
    expect(text.trim().split('\n').at(-1)).toBe('-- ended 2026-12-06T01:00:10.000000Z: client_gone, after 10.000 s; 3 statements, 1 failed');
    // An SSH session has no transcript.
    expect(buildTranscript('S-ssh', [JSON.parse(JSON.stringify(createEvent({ ...base, target: { name: 'web', protocol: 'ssh' }, session_id: 'S-ssh', type: 'session.start', outcome: 'success', details: {} })))])).toBeUndefined();
  });
});
