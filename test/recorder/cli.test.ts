import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCli } from '../../app/main.ts';
import { openAuditLog, formatEventRow, escapeTerminal, listSegments } from '../../recorder/audit/index.ts';
import { createEvent } from '../../src/events/envelope.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const o: Buffer[] = [];
  const e: Buffer[] = [];
  const w = (a: Buffer[]) => new Writable({ write(c, _x, cb) { a.push(Buffer.from(c)); cb(); } });
  const code = await runCli(args, w(o), w(e));
  return { code, out: Buffer.concat(o).toString(), err: Buffer.concat(e).toString() };
}

const HOSTILE_USER = 'eve\r\n2026-01-01T00:00:00.000000Z  auth.success  success  admin\x1b[2K\x1b[31m';
const HOSTILE_SQL = "SELECT 1;\r\n\x1b]0;pwned\x07\x9b2J\u202edrop\x7f\\x1b";

async function dataDirWithEvents(): Promise<string> {
  const data = tempDir();
  const key = makeSigningKey(path.join(data, 'ca'));
  const w = await openAuditLog(path.join(data, 'audit'), auditOptions(key.keyFile, { segmentMaxBytes: 4000 }));
  for (let i = 0; i < 30; i++) await w.append(sampleEvent(i));
  const session = (type: 'session.start' | 'session.end', user: string, id: string, details = {}) =>
    createEvent({ type, outcome: 'success', actor: { user, roles: ['dev'] }, source: { ip: '10.0.0.9', port: 5555 }, target: { name: 'web1', protocol: 'ssh', host: '10.0.0.2', login: 'deploy' }, session_id: id, details });
  await w.append(session('session.start', 'carol', 'S-1'));
  await w.append(session('session.end', 'carol', 'S-1', { reason: 'client_closed' }));
  await w.append(session('session.start', HOSTILE_USER, 'S-2'));
  await w.append(sampleEvent(99, { actor: { user: HOSTILE_USER, roles: [] }, details: { statement: HOSTILE_SQL } }));
  await w.close();
  return data;
}

describe('human-readable output is safe against terminal control characters', () => {
  it('escapes C0, C1, DEL, ESC and bidi controls so no field can forge a row or recolour output', () => {
    const e = sampleEvent(1, { actor: { user: HOSTILE_USER, roles: [] }, details: { statement: HOSTILE_SQL } });
    const row = formatEventRow(e);
    expect(row).not.toMatch(/[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(row.split('\n')).toHaveLength(1);
    expect(row).toContain('eve\\x0d\\x0a2026-01-01');
    expect(row).toContain('\\x1b[2K\\x1b[31m');
    expect(row).toContain('\\x9b2J\\u202edrop\\x7f');
    // A literal backslash sequence in the input is not confusable with an escape we produced.
    expect(row).toContain('\\\\x1b');
    expect(escapeTerminal('plain text, ünïcode ✓')).toBe('plain text, ünïcode ✓');
  });
});

describe('vigil audit / sessions CLI', () => {
  it('audit verify passes on an intact log and names the first bad record otherwise', async () => {
    const data = await dataDirWithEvents();
    const ok = await cli(['audit', 'verify', '--data', data]);
    expect(ok.err).toBe('');
    expect(ok.code).toBe(3); // intact and signed; without a witness its completeness is not proven
    expect(ok.out).toMatch(/audit log intact and signed up to seq \d+: completeness NOT proven \(no witness given\) \(\d+ records in \d+ segment/);
    // Verification needs only the public key: remove the private key.
    fs.rmSync(path.join(data, 'ca', 'audit_signing.key'));
    const seg = listSegments(path.join(data, 'audit'))[1];
    const file = path.join(data, 'audit', seg);
    const ls = fs.readFileSync(file, 'utf8').split('\n');
    const seq = JSON.parse(ls[1]).seq;
    ls[1] = ls[1].replace('"outcome":"success"', '"outcome":"failure"');
    fs.writeFileSync(file, ls.join('\n'));
    const bad = await cli(['audit', 'verify', '--data', data]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain(`segment ${seg}, line 2, seq ${seq}`);
    expect(bad.err).toContain('hash-mismatch');
  });

  it('a head witnessed outside the machine catches a log rolled back together with its head.json', async () => {
    const data = await dataDirWithEvents();
    const audit = path.join(data, 'audit');
    const older = path.join(tempDir(), 'audit-copy');
    fs.cpSync(audit, older, { recursive: true });
    // The log grows; an auditor keeps its signed head elsewhere.
    const w = await openAuditLog(audit, auditOptions(path.join(data, 'ca', 'audit_signing.key')));
    for (let i = 0; i < 20; i++) await w.append(sampleEvent(100 + i));
    await w.close();
    const head = await cli(['audit', 'head', '--data', data]);
    expect(head.code).toBe(0);
    const saved = JSON.parse(head.out);
    expect(saved).toMatchObject({ seq: expect.any(Number), head: expect.stringMatching(/^[0-9a-f]{64}$/), sig: expect.any(String) });
    const witness = path.join(tempDir(), 'heads.jsonl');
    fs.writeFileSync(witness, head.out);
    const good = await cli(['audit', 'verify', '--data', data, '--witness', witness]);
    expect(good.code).toBe(0);
    expect(good.out).toContain(`complete up to the witnessed head seq ${saved.seq}`);
    // Someone restores the older copy — segments and head.json alike: consistent on its own...
    fs.rmSync(audit, { recursive: true });
    fs.cpSync(older, audit, { recursive: true });
    expect((await cli(['audit', 'verify', '--data', data])).code).toBe(3);
    // ...but it does not reach the witnessed head.
    const rolledBack = await cli(['audit', 'verify', '--data', data, '--witness', witness]);
    expect(rolledBack.code).toBe(1);
    expect(rolledBack.err).toContain(`the signed head in ${witness} is at seq ${saved.seq}`);
    expect(rolledBack.err).toContain('[truncated]');
    // A witness not signed by this log's key is refused as such.
    fs.writeFileSync(witness, JSON.stringify({ ...saved, head: 'f'.repeat(64) }) + '\n');
    const forged = await cli(['audit', 'verify', '--data', data, '--witness', witness]);
    expect(forged.code).toBe(1);
    expect(forged.err).toContain('is not signed by this log');
    // A witness file that is missing, empty or not JSON cannot be read (5), naming it; nothing is verified.
    const missing = await cli(['audit', 'verify', '--data', data, '--witness', path.join(tempDir(), 'nope.jsonl')]);
    expect(missing.code).toBe(5);
    expect(missing.err).toMatch(/cannot read the witness .*nope\.jsonl \(ENOENT\)/);
    fs.writeFileSync(witness, '\n\n');
    expect((await cli(['audit', 'verify', '--data', data, '--witness', witness])).err).toContain(`witness ${witness} holds no signed head`);
    fs.writeFileSync(witness, head.out + 'garbage\n');
    const garbage = await cli(['audit', 'verify', '--data', data, '--witness', witness]);
    expect(garbage.code).toBe(5);
    expect(garbage.err).toContain(`witness ${witness} line 2 is not a signed head`);
    // A well-formed JSON object that is not a head is refused as unsigned, not trusted.
    fs.writeFileSync(witness, '{"seq":"x"}\n');
    const notHead = await cli(['audit', 'verify', '--data', data, '--witness', witness]);
    expect(notHead.code).toBe(1);
    expect(notHead.err).toContain('is not signed by this log');
  });

  it('audit search prints a table by default and JSON lines with --json, filtered', async () => {
    const data = await dataDirWithEvents();
    const table = await cli(['audit', 'search', '--data', data, '--user', 'carol']);
    expect(table.code).toBe(0);
    const rows = table.out.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^TIME\s+TYPE/);
    expect(rows).toHaveLength(3);
    expect(rows[1]).toContain('session.start');
    expect(rows[2]).toContain('reason=client_closed');

    const json = await cli(['audit', 'search', '--data', data, '--type', 'db.', '--json', '--limit', '3', '--since', '1h']);
    const events = json.out.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(events).toHaveLength(3);
    for (const e of events) expect(e.type).toBe('db.query');
    expect(events[2].actor.user).toBe(HOSTILE_USER); // JSON carries the exact value

    // Checkpoints are chain plumbing: hidden unless asked for by type.
    const all = (await cli(['audit', 'search', '--data', data, '--json'])).out.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(all.length).toBeGreaterThan(0);
    expect(all.some((e) => e.type === 'audit.checkpoint')).toBe(false);
    const checkpoints = (await cli(['audit', 'search', '--data', data, '--type', 'audit.checkpoint', '--json'])).out.trimEnd().split('\n');
    expect(checkpoints.length).toBeGreaterThan(0);
    expect(JSON.parse(checkpoints[0]).type).toBe('audit.checkpoint');

    const none = await cli(['audit', 'search', '--data', data, '--until', '2000-01-01T00:00:00Z', '--json']);
    expect(none.out).toBe('');
    const badTime = await cli(['audit', 'search', '--data', data, '--since', 'yesterday']);
    expect(badTime.code).toBe(2);
    expect(badTime.err).toContain('--since');
  });

  it('the hostile user name cannot forge a row in the table', async () => {
    const data = await dataDirWithEvents();
    const table = await cli(['audit', 'search', '--data', data, '--session', 'S-2']);
    const rows = table.out.trimEnd().split('\n');
    expect(rows).toHaveLength(2);
    expect(table.out).not.toContain('\x1b');
    expect(table.out).not.toContain('\r');
  });

  it('audit tail shows the newest events', async () => {
    const data = await dataDirWithEvents();
    const tail = await cli(['audit', 'tail', '--data', data, '-n', '2', '--json']);
    const events = tail.out.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(events.map((e) => e.type)).toEqual(['db.query', 'audit.checkpoint']);
  });

  it('sessions list groups session.start / session.end', async () => {
    const data = await dataDirWithEvents();
    const res = await cli(['sessions', 'list', '--data', data]);
    expect(res.code).toBe(0);
    const rows = res.out.trimEnd().split('\n');
    expect(rows).toHaveLength(3);
    expect(rows[1]).toMatch(/^S-1\s+\S+\s+\S+\s+carol\s+web1\s+ssh\s+client_closed$/);
    expect(rows[2]).toMatch(/^S-2\s+\S+\s+\(live\)\s+eve\\x0d\\x0a/);
    const carol = await cli(['sessions', 'list', '--data', data, '--user', 'carol', '--json']);
    expect(carol.out.trimEnd().split('\n').map((l) => JSON.parse(l).id)).toEqual(['S-1']);
  });
});

describe('read-only audit commands find the data dir without the full config', () => {
  it('take data_dir from --config or $VIGIL_CONFIG (relative to the file), and name a data_dir that is not a string', async () => {
    const data = await dataDirWithEvents();
    const dir = tempDir();
    const cfg = path.join(dir, 'vigil.yaml');
    // data_dir relative to the config file; a section these commands do not use may be anything the
    // full loader would check (`vigil config check` is what validates the file).
    fs.writeFileSync(cfg, `data_dir: ${path.relative(dir, data)}\n`);
    const byFlag = await cli(['audit', 'search', '--config', cfg, '--user', 'carol', '--json']);
    expect(byFlag.code, byFlag.err).toBe(0);
    expect(byFlag.out.trim().split('\n').map((l) => JSON.parse(l).type)).toEqual(['session.start', 'session.end']);

    const saved = process.env.VIGIL_CONFIG;
    const cwd = process.cwd();
    try {
      process.env.VIGIL_CONFIG = cfg;
      process.chdir(tempDir()); // the file's directory, not the working directory, anchors data_dir
      const byEnv = await cli(['audit', 'search', '--user', 'carol', '--json']);
      expect(byEnv.code, byEnv.err).toBe(0);
      expect(byEnv.out.trim().split('\n')).toHaveLength(2);
    } finally {
      process.chdir(cwd);
      if (saved === undefined) delete process.env.VIGIL_CONFIG;
      else process.env.VIGIL_CONFIG = saved;
    }

    fs.writeFileSync(cfg, 'data_dir: 42\n');
    const bad = await cli(['audit', 'search', '--config', cfg]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/data_dir/);
    const missing = await cli(['audit', 'search', '--config', path.join(dir, 'nope.yaml')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/cannot read config file .*nope\.yaml: no such file/);
  });
});
