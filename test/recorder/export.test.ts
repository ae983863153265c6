import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it, expect, beforeAll } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCli } from '../../app/main.ts';
import { openAuditLog, searchAuditLog, canonicalJson } from '../../recorder/audit/index.ts';
import { createEvent, type AuditEvent } from '../../src/events/envelope.ts';
import { EVENT_CATALOG, type EventType } from '../../src/events/catalog.ts';
import { loadConfig } from '../../app/config.ts';
import { csvCell, DEFAULT_CSV_COLUMNS, compileTemplate, streamAuditRecords } from '../../recorder/export/index.ts';
import { loadOcsfFixture, validateOcsf } from '../../recorder/export/ocsf/validate.ts';
import { extractOcsfFixture } from '../../recorder/export/ocsf/extract-schema.ts';
import { makeSigningKey, auditOptions } from './helpers.ts';
import { oneEventOfEachType } from './export-events.ts';
import { parseCsv } from './csv-parse.ts';

const cli = runCliCaptured;

/** Cells a spreadsheet would evaluate, as user names (the first CSV column after time). */
const FORMULA_USERS = ['=1+1', '+SUM(A1:A2)', '-2+3', '@SUM(1)', '\tcmd', '\rcmd', "=cmd|' /C calc'!A0"];
const OLD = new Date('2020-03-01T10:00:00Z');

async function dataDir(): Promise<{ data: string; events: AuditEvent[] }> {
  const data = tempDir();
  const key = makeSigningKey(path.join(data, 'ca'));
  // Small segments: the export streams across many of them.
  const w = await openAuditLog(path.join(data, 'audit'), auditOptions(key.keyFile, { segmentMaxBytes: 4000 }));
  // Checkpoints come from the writer itself (it refuses them from callers): its own are exported.
  const events = oneEventOfEachType().filter((e) => e.type !== 'audit.checkpoint');
  for (const u of FORMULA_USERS) {
    events.push(createEvent({ type: 'auth.failure', outcome: 'failure', actor: { user: u, roles: [] }, source: { ip: '198.51.100.1' }, target: { name: 'web-1', protocol: 'ssh' }, details: { reason: 'no certificate' } }));
  }
  events.push(createEvent({ type: 'auth.success', outcome: 'success', time: OLD, actor: { user: 'olduser', roles: [] }, source: { ip: '10.0.0.1' }, target: { name: 'web-1', protocol: 'ssh' }, details: {} }));
  // Through the real writer, one at a time (as the gateway would), so each is durable in order.
  for (const e of events) await w.append(e);
  await w.close();
  return { data, events };
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

const ALL_TYPES = Object.keys(EVENT_CATALOG) as EventType[];

describe('the test\'s CSV parser (no CSV library is installed) is strict', () => {
  it('parses quoted commas, CRLF and doubled quotes, and rejects what a lenient parser would re-split', () => {
    expect(parseCsv('a,"b,c","d\r\ne","f""g"\r\n,\r\n')).toEqual([['a', 'b,c', 'd\r\ne', 'f"g'], ['', '']]);
    expect(() => parseCsv('a,b"c\r\n')).toThrow(/quote inside an unquoted field/);
    expect(() => parseCsv('"a"b\r\n')).toThrow(/text after a closing quote/);
    expect(() => parseCsv('a\nb\r\n')).toThrow(/bare LF/);
    expect(() => parseCsv('a\rb\r\n')).toThrow(/bare CR/);
    expect(() => parseCsv('"a\r\n')).toThrow(/unterminated/);
    expect(() => parseCsv('a,b')).toThrow(/CRLF/);
  });
});

describe('vigil audit export', () => {
  let data: string;
  let written: AuditEvent[];
  beforeAll(async () => {
    ({ data, events: written } = await dataDir());
  });

  it('jsonl: every event exactly as stored (canonical bytes), every catalog type, checkpoints on request', async () => {
    // What the log holds before this export (which adds its own audit.export event after it read the log).
    const { records } = await searchAuditLog(path.join(data, 'audit'), {});
    const r = await cli(['audit', 'export', '--data', data, '--format', 'jsonl', '--checkpoints']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n').filter(Boolean);
    expect(lines).toEqual(records.map((x) => canonicalJson(x.event)));
    const types = new Set(lines.map((l) => (JSON.parse(l) as AuditEvent).type));
    for (const t of ALL_TYPES) expect(types, t).toContain(t);
    for (const e of written) expect(lines).toContain(canonicalJson(JSON.parse(JSON.stringify(e))));
    // Without --checkpoints the chain plumbing is left out (as in audit search).
    const plain = await cli(['audit', 'export', '--data', data, '--format', 'jsonl']);
    const expected = lines.map((l) => (JSON.parse(l) as AuditEvent).type).filter((t) => t !== 'audit.checkpoint');
    // ... plus the first export's own audit.export event, written after it had read the log.
    expect(jsonLines(plain.out).map((e) => e.type)).toEqual([...expected, 'audit.export']);
  });

  it('the streaming reader gives the same records as search whatever the read size (lines and UTF-8 split across reads)', async () => {
    const dir = path.join(tempDir(), 'audit');
    const key = makeSigningKey(path.join(path.dirname(dir), 'ca'));
    const w = await openAuditLog(dir, auditOptions(key.keyFile, { segmentMaxBytes: 3000 }));
    for (let i = 0; i < 40; i++) {
      await w.append(createEvent({ type: 'ssh.command', outcome: 'success', actor: { user: `ünï-${i}`, roles: [] }, source: { ip: '10.0.0.1' }, target: { name: 'web-1', protocol: 'ssh' }, details: { command: `echo ✓😀 ${'é'.repeat(i)}` } }));
    }
    await w.close();
    const { records } = await searchAuditLog(dir, { hideCheckpoints: false });
    for (const chunkBytes of [1, 7, 64, 1 << 20]) {
      const got: string[] = [];
      for await (const r of streamAuditRecords(dir, {}, { chunkBytes })) got.push(r.eventJson);
      expect(got, `chunkBytes ${chunkBytes}`).toEqual(records.map((x) => canonicalJson(x.event)));
    }
  });

  it('csv: RFC 4180, PCI DSS columns first, every type parses back field for field', async () => {
    const { records } = await searchAuditLog(path.join(data, 'audit'), {});
    const r = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--checkpoints']);
    expect(r.code).toBe(0);
    const rows = parseCsv(r.out);
    expect(rows[0]).toEqual(DEFAULT_CSV_COLUMNS);
    expect(rows[0].slice(0, 6)).toEqual(['time', 'user', 'type', 'outcome', 'source', 'resource']);
    expect(rows.length - 1).toBe(records.length);
    const unescape = (s: string) => (/^'[=+\-@\t\r]/.test(s) ? s.slice(1) : s);
    rows.slice(1).forEach((row, i) => {
      const e = records[i].event;
      expect(row.length).toBe(DEFAULT_CSV_COLUMNS.length);
      expect(row[0]).toBe(e.time);
      expect(unescape(row[1])).toBe(e.actor.user);
      expect(row[2]).toBe(e.type);
      expect(row[3]).toBe(e.outcome);
      expect(row[4]).toBe(e.source.ip);
      expect(row[5]).toBe(e.target.name);
      expect(row[6]).toBe(e.id);
      expect(JSON.parse(row[DEFAULT_CSV_COLUMNS.indexOf('details')])).toEqual(e.details);
    });
    expect(new Set(rows.slice(1).map((r) => r[2]))).toEqual(new Set(ALL_TYPES));
    // The statement with a comma, quotes and a newline survives as one cell.
    const q = rows.find((r) => r[2] === 'db.query')!;
    expect(JSON.parse(q[DEFAULT_CSV_COLUMNS.indexOf('details')]).sql).toBe('SELECT * FROM orders WHERE id = $1, "note" = $2\nAND x = $3');
  });

  it('csv: cells a spreadsheet would evaluate are escaped with a leading apostrophe', async () => {
    const r = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--type', 'auth.failure', '--columns', 'user,details.reason,type']);
    const rows = parseCsv(r.out);
    expect(rows[0]).toEqual(['user', 'details.reason', 'type']);
    const users = rows.slice(1).map((r) => r[0]);
    for (const u of FORMULA_USERS) expect(users).toContain(`'${u}`);
    for (const cell of rows.flat()) expect(cell).not.toMatch(/^[=+\-@\t\r]/);
    // Unit: exactly the dangerous first characters, and quoting still applies after the apostrophe.
    expect(csvCell('=1+1')).toBe("'=1+1");
    expect(csvCell('-')).toBe("'-");
    expect(csvCell('a=1')).toBe('a=1');
    expect(csvCell('=a,"b"')).toBe(`"'=a,""b"""`);
    expect(csvCell('\rx')).toBe(`"'\rx"`);
    expect(csvCell('')).toBe('');
    // Columns can be any dotted path; arrays of strings are joined.
    const p = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--type', 'db.query', '--columns', 'details.params,roles']);
    expect(parseCsv(p.out).at(-1)).toEqual(["42,@evil,-1+2", 'dba,oncall']);
    const bad = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--columns', 'user,nonsense']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('unknown field "nonsense"');
    // Names of the object prototype are no aliases and no fields: a usage error, or empty cells.
    const proto = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--columns', 'user,constructor']);
    expect(proto.code).toBe(2);
    expect(proto.err).toContain('unknown field "constructor"');
    const inherited = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--type', 'db.query', '--columns', 'details.constructor,details.__proto__,user']);
    expect(inherited.code).toBe(0);
    for (const row of parseCsv(inherited.out).slice(1)) expect(row.slice(0, 2)).toEqual(['', '']);
  });

  it('ocsf: every catalog type maps to its class and validates against the OCSF 1.8.0 structure with 0 errors', async () => {
    const r = await cli(['audit', 'export', '--data', data, '--format', 'ocsf', '--checkpoints']);
    expect(r.code).toBe(0);
    const fixture = loadOcsfFixture();
    const events = jsonLines(r.out);
    const errors = events.flatMap((e) => validateOcsf(e, fixture).map((p) => `${(e.metadata as { event_code: string }).event_code}: ${p}`));
    expect(errors).toEqual([]);
    const byType = new Map(events.map((e) => [(e.metadata as { event_code: string }).event_code, e]));
    for (const t of ALL_TYPES) expect(byType.has(t), t).toBe(true);
    const cls = (t: string) => byType.get(t)!.class_uid;
    expect(cls('auth.success')).toBe(3002);
    expect(cls('auth.failure')).toBe(3002);
    expect(cls('session.start')).toBe(3003);
    expect(cls('ssh.exec')).toBe(4007);
    expect(cls('session.end')).toBe(4007); // an ssh session
    expect(cls('db.query')).toBe(6005);
    expect(cls('access.approved')).toBe(3005);
    expect(byType.get('access.approved')!.activity_id).toBe(1);
    expect(byType.get('access.revoked')!.activity_id).toBe(2);
    expect(cls('lock.created')).toBe(3001);
    expect(cls('cert.issued')).toBe(3004);
    expect(cls('api.request')).toBe(6003);
    expect(cls('ssh.sftp')).toBe(1001);
    const q = byType.get('db.query')!;
    expect((q.query_info as { query_string: string }).query_string).toContain('SELECT * FROM orders');
    expect(q.status_id).toBe(1);
    expect((q.actor as { user: { name: string } }).user.name).toBe('alice');
    expect(q.src_endpoint).toEqual({ ip: '10.0.0.7', port: 50123 });
    expect(q.dst_endpoint).toMatchObject({ name: 'orders-db', hostname: '10.1.2.3' });
    expect((q.metadata as { product: { name: string } }).product.name).toBe('vigil');
    expect(byType.get('auth.failure')!.status_id).toBe(2);
    expect(byType.get('db.query.start')!.status_id).toBe(0); // outcome unknown
    expect(typeof q.time).toBe('number');
    // Nothing recorded is lost: the vigil details ride along in unmapped.
    expect((q.unmapped as { vigil: { details: unknown } }).vigil.details).toMatchObject({ params: ['42', '@evil', '-1+2'] });
  });

  it('the OCSF validator rejects what the schema forbids (it is not a rubber stamp)', () => {
    const fixture = loadOcsfFixture();
    const good = JSON.parse(JSON.stringify(jsonLinesOf(oneEventOfEachType().find((e) => e.type === 'db.query')!))) as Record<string, unknown>;
    expect(validateOcsf(good, fixture)).toEqual([]);
    const broken = { ...good, severity_id: 42, surprise: 1, metadata: { product: { name: 'vigil' } }, src_endpoint: { ip: 'not-an-ip' } } as Record<string, unknown>;
    delete broken.time;
    const p = validateOcsf(broken, fixture);
    expect(p).toContain('datastore_activity.time: required attribute missing');
    expect(p).toContain('datastore_activity.surprise: not an attribute of datastore_activity');
    expect(p.some((x) => x.startsWith('datastore_activity.severity_id: 42 is not an enum id'))).toBe(true);
    expect(p).toContain('datastore_activity.metadata.version: required attribute missing');
    expect(p.some((x) => x.startsWith('datastore_activity.src_endpoint.ip: "not-an-ip" is not a valid ip_t'))).toBe(true);
    expect(validateOcsf({ ...good, actor: { user: { name: 1 } } }, fixture)).toEqual(['datastore_activity.actor.user.name: expected username_t (string_t), got 1']);
    // A profile attribute needs its profile listed.
    expect(validateOcsf({ ...good, device: { type_id: 1, name: 'x' } }, fixture)).toEqual(['datastore_activity.device: belongs to profile host, which metadata.profiles does not list']);
  });

  it.skipIf(!fs.existsSync('/work/shared/ocsf-schema-1.8.0'))('the committed OCSF fixture is what extract-schema.ts makes from the schema source', () => {
    const fresh = extractOcsfFixture('/work/shared/ocsf-schema-1.8.0');
    expect(JSON.parse(JSON.stringify(fresh))).toEqual(loadOcsfFixture());
  });

  it('filters: user, type prefix, target, session, since/until', async () => {
    const types = async (...flags: string[]) => jsonLines((await cli(['audit', 'export', '--data', data, '--format', 'jsonl', ...flags])).out);
    const alice = await types('--user', 'alice');
    expect(alice.length).toBeGreaterThan(5);
    expect(alice.every((e) => (e.actor as { user: string }).user === 'alice')).toBe(true);
    const db = await types('--type', 'db.');
    expect(db.map((e) => e.type).sort()).toEqual(['db.cancel', 'db.query', 'db.query.start', 'db.session_query', 'db.user.granted', 'db.user.locked', 'db.user.provisioned', 'db.user.provisioning_failed', 'db.user.revoked']);
    expect((await types('--target', 'shop-db')).map((e) => e.type)).toEqual(['db.cancel']);
    expect((await types('--session', 'S-pg')).map((e) => e.type)).toEqual(['auth.success', 'db.query.start', 'db.query', 'db.session_query']);
    const old = await types('--until', '2021-01-01T00:00:00Z');
    expect(old.map((e) => (e.actor as { user: string }).user)).toEqual(['olduser']);
    const recent = await types('--since', '2021-01-01T00:00:00Z', '--user', 'olduser');
    expect(recent).toEqual([]);
    expect((await types('--since', '2020-03-01T09:00:00Z', '--until', '2020-03-01T11:00:00Z')).length).toBe(1);
  });

  it('--out FILE: written 0600 through a temporary file, same bytes as stdout, and the export is on the audit record', async () => {
    const dir = tempDir();
    const out = path.join(dir, 'evidence.csv');
    fs.writeFileSync(out, 'old contents', { mode: 0o644 });
    const oldMask = process.umask(0o022);
    let r: CliResult;
    try {
      r = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--user', 'alice', '--out', out]);
    } finally {
      process.umask(oldMask);
    }
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/exported \d+ event\(s\) to .*evidence\.csv/);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual(['evidence.csv']); // no temporary file left
    const stdout = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--user', 'alice']);
    expect(fs.readFileSync(out, 'utf8')).toBe(stdout.out);
    const { records } = await searchAuditLog(path.join(data, 'audit'), { type: 'audit.export', user: undefined });
    const mine = records.map((x) => x.event).filter((e) => e.details.out === out);
    expect(mine).toHaveLength(1);
    expect(mine[0].outcome).toBe('success');
    expect(mine[0].details).toMatchObject({ format: 'csv', filter: { user: 'alice' }, filter_text: '--user alice', count: parseCsv(stdout.out).length - 1 });
    expect(mine[0].target).toEqual({ name: 'audit', protocol: 'vigil' });
    // A destination that cannot be created: a usage error, nothing written.
    const bad = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--out', path.join(dir, 'no-such-dir', 'x.csv')]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--out');
    const isDir = await cli(['audit', 'export', '--data', data, '--format', 'csv', '--out', dir]);
    expect(isDir.code).toBe(2);
    expect(isDir.err).toContain('is a directory');
    expect(fs.readdirSync(dir)).toEqual(['evidence.csv']);
  });

  it('while a gateway holds the log, the export reads it and its audit.export goes through the spool into the same chain', async () => {
    const gateway = await openAuditLog(path.join(data, 'audit'), auditOptions(path.join(data, 'ca', 'audit_signing.key')));
    try {
      const out = path.join(tempDir(), 'live.jsonl');
      const r = await cli(['audit', 'export', '--data', data, '--format', 'jsonl', '--target', 'orders-db', '--out', out]);
      expect(r.err).toContain('exported');
      expect(r.code).toBe(0);
      expect(jsonLines(fs.readFileSync(out, 'utf8')).length).toBeGreaterThanOrEqual(3);
    } finally {
      await gateway.close();
    }
    const { records } = await searchAuditLog(path.join(data, 'audit'), { type: 'audit.export', target: 'audit' });
    expect(records.some((x) => x.event.details.filter_text === '--target orders-db' && x.event.outcome === 'success')).toBe(true);
  });

  it('an output that fails (a closed pipe) fails the export, and the audit.export event says so', async () => {
    const e: Buffer[] = [];
    const broken = new Writable({ write(_c, _x, cb) { cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })); } });
    broken.on('error', () => {});
    const code = await runCli(['audit', 'export', '--data', data, '--format', 'jsonl', '--type', 'lock.'], broken, new Writable({ write(c, _x, cb) { e.push(Buffer.from(c)); cb(); } }));
    expect(code).not.toBe(0);
    expect(Buffer.concat(e).toString()).toContain('EPIPE');
    const { records } = await searchAuditLog(path.join(data, 'audit'), { type: 'audit.export' });
    const failed = records.map((r) => r.event).filter((x) => x.details.filter_text === '--type lock.');
    expect(failed).toHaveLength(1);
    expect(failed[0].outcome).toBe('failure');
    expect(failed[0].details.error).toContain('EPIPE');
  });

  it('template:NAME from export.templates (Splunk key=value and Elastic JSON lines)', async () => {
    const cfgDir = tempDir();
    const cfg = path.join(cfgDir, 'vigil.yaml');
    fs.writeFileSync(
      cfg,
      [
        'export:',
        '  templates:',
        '    splunk:',
        '      fields: { src: source.ip, dest: target.name }',
        `      line: 'time=\${time} user=\${user|quote} action=\${type} status=\${outcome} src=\${src} dest=\${dest|quote} sql=\${details.sql|quote}'`,
        '    elastic:',
        `      line: '{"@timestamp":\${time|json},"event":{"action":\${type|json},"outcome":\${outcome|json}},"user":{"name":\${user|json}},"source":{"ip":\${source|json}},"destination":{"address":\${resource|json}},"session":\${session_id|json}}'`,
      ].join('\n'),
    );
    const s = await cli(['audit', 'export', '--config', cfg, '--data', data, '--format', 'template:splunk', '--type', 'db.query', '--session', 'S-pg']);
    expect(s.err).toBe('');
    const lines = s.out.split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^time=\S+Z user="alice" action=db\.query status=success src=10\.0\.0\.7 dest="orders-db" sql="SELECT \* FROM orders WHERE id = \$1, \\"note\\" = \$2\\nAND x = \$3"$/);
    const el = await cli(['audit', 'export', '--config', cfg, '--data', data, '--format', 'template:elastic', '--user', 'alice']);
    const docs = jsonLines(el.out);
    expect(docs.length).toBeGreaterThan(5);
    expect(docs[0]).toMatchObject({ event: { outcome: expect.any(String) }, user: { name: 'alice' } });
    const missing = await cli(['audit', 'export', '--config', cfg, '--data', data, '--format', 'template:nope']);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('have: splunk, elastic');
    // A template naming a field that cannot exist is a config error, before anything is exported.
    fs.writeFileSync(cfg, "export:\n  templates:\n    bad:\n      line: 'x=${nosuch}'\n");
    expect(() => loadConfig({ configPath: cfg, dataDir: data })).toThrow(/export\.templates\.bad\.line.*unknown field "nosuch"/);
    expect(() => compileTemplate({ line: 'no placeholder' })).toThrow(/no \$\{field\}/);
    expect(compileTemplate({ line: 'a=$${literal} b=${type|json}' })(oneEventOfEachType()[0])).toBe('a=${literal} b="cert.issued"\n');
  });

  it('the example config\'s Splunk and Elastic templates render every catalog type (Elastic: valid JSON, one line)', () => {
    const { config } = loadConfig({ configPath: path.join(import.meta.dirname, '../../config/vigil.example.yaml'), checkFiles: false });
    const splunk = compileTemplate(config.export.templates.splunk);
    const elastic = compileTemplate(config.export.templates.elastic);
    for (const e of oneEventOfEachType().map((x) => JSON.parse(JSON.stringify(x)) as AuditEvent)) {
      const doc = JSON.parse(elastic(e)) as { event: { action: string; outcome: string }; user: { name: string } };
      expect(doc.event).toMatchObject({ action: e.type, outcome: e.outcome });
      expect(doc.user.name).toBe(e.actor.user);
      const line = splunk(e);
      expect(line.indexOf('\n')).toBe(line.length - 1);
      expect(line).toContain(`action=${e.type} status=${e.outcome}`);
    }
  });

  it('progress bar on a TTY stderr only', async () => {
    const tty = await cli(['audit', 'export', '--data', data, '--format', 'ocsf'], { tty: true });
    expect(tty.code).toBe(0);
    expect(tty.err).toContain('export [');
    expect(tty.err).toContain('100%');
    expect(tty.err.endsWith('\n')).toBe(true);
    const plain = await cli(['audit', 'export', '--data', data, '--format', 'ocsf', '--until', '2030-01-01T00:00:00Z']);
    expect(plain.err).toBe('');
    // Same events (the first export's own audit.export event came after it, and is in the second).
    expect(jsonLines(plain.out).slice(0, jsonLines(tty.out).length)).toEqual(jsonLines(tty.out));
  });
});

function jsonLinesOf(e: AuditEvent): Record<string, unknown> {
  // Through the mapping as the exporter calls it (a parsed event, not the Envelope instance).
  return toOcsfForTest(JSON.parse(JSON.stringify(e)) as AuditEvent);
}
import { toOcsf as toOcsfForTest } from '../../recorder/export/index.ts';
import { runCliCaptured, type CliResult } from '../support/cli.ts';
