import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterAll } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { openAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { verifyBundle } from '../../recorder/bundle/index.ts';
import { auditOptions, sampleEvent } from './helpers.ts';

/**
 * Review of evidence bundles and exports from the auditor's side: a bundle the gateway made honestly must
 * verify, a log cut back must not yield a bundle that says it reaches the log's newest record, and an
 * export must say what it left out. A real audit log in a temp data dir, the vigil CLI.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function newDataDir(prefix: string) {
  const base = tempDir(prefix);
  dirs.push(base);
  const dataDir = path.join(base, 'data');
  await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
  return { base, dataDir, audit: dataPaths(dataDir).audit, key: dataPaths(dataDir).auditSigningKey };
}

const iso = (ms: number) => new Date(ms).toISOString();

describe('bundle end boundary after a clock step back', () => {
  it('a bundle whose range is followed by records dated before it (the clock was stepped back) verifies', async () => {
    const { base, dataDir, audit, key } = await newDataDir('vigil-bundle-clock-');
    // The gateway's clock ran ahead (stamping events an hour from now), then was stepped back to the right
    // time: the checkpoint that signs the range is dated before the range.
    const ahead = Date.now() + 3600_000;
    const w = await openAuditLog(audit, auditOptions(key));
    await w.append(sampleEvent(1, { time: new Date(ahead - 600_000), session_id: 'S-before' }));
    await w.append(sampleEvent(2, { time: new Date(ahead), session_id: 'S-range' }));
    await w.close(); // the checkpoint, dated by the corrected clock (now)
    const out = path.join(base, 'case.tar');
    const made = await runCliCaptured(['audit', 'bundle', '--data', dataDir, '--since', iso(ahead - 60_000), '--until', iso(ahead + 60_000), '--out', out]);
    expect(made.code, made.err).toBe(0);
    const v = await verifyBundle(out);
    expect(v.manifest!.range_seq).toEqual({ first: 2, last: 2 });
    // Every record of the range is there and the chain goes past it to a signed checkpoint: nothing is
    // withheld, so no "incomplete" for the auditor.
    expect(v.problems).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.boundaries.join('; ')).toMatch(/seq 3 .*follows the range/);
  });
});

describe('bundle of a log cut back together with its head.json', () => {
  it('refuses when the configured witness holds a newer head than the log reaches', async () => {
    const { base, dataDir, audit, key } = await newDataDir('vigil-bundle-cut-');
    const t0 = Date.now() - 3600_000;
    let w = await openAuditLog(audit, auditOptions(key));
    await w.append(sampleEvent(1, { time: new Date(t0), session_id: 'S-1' }));
    await w.close();
    // What someone who can write the data dir (not the key) keeps: the log and its signed head as they stood.
    const snapshot = path.join(base, 'audit-then');
    fs.cpSync(audit, snapshot, { recursive: true });
    w = await openAuditLog(audit, auditOptions(key));
    await w.append(sampleEvent(2, { type: 'ssh.exec', time: new Date(t0 + 60_000), session_id: 'S-2', details: { command: 'rm -rf /srv/evidence' } }));
    await w.close();
    // The gateway published every signed head to the witness (audit.witness.file), off this host.
    const witnessFile = path.join(base, 'witness.json');
    fs.copyFileSync(path.join(audit, 'head.json'), witnessFile);
    const wholeLog = path.join(base, 'audit-whole');
    fs.cpSync(audit, wholeLog, { recursive: true });
    // The log is cut back to the snapshot: it verifies on its own, the rm -rf is gone.
    fs.rmSync(audit, { recursive: true, force: true });
    fs.cpSync(snapshot, audit, { recursive: true });
    expect((await searchAuditLog(audit, { type: 'ssh.exec' })).records).toEqual([]);

    const configFile = path.join(base, 'vigil.json');
    fs.writeFileSync(configFile, JSON.stringify({ data_dir: dataDir, audit: { witness: { file: witnessFile } } }));
    const out = path.join(base, 'case.tar');
    const made = await runCliCaptured(['audit', 'bundle', '--config', configFile, '--since', iso(t0 - 60_000), '--out', out]);
    expect(made.code).not.toBe(0);
    expect(made.err).toMatch(/does not verify.*witness|witness.*does not reach|not reach/i);
    expect(fs.existsSync(out)).toBe(false);

    // With the log whole again, the bundle is made and tells the auditor which witnessed head it reached.
    fs.rmSync(audit, { recursive: true, force: true });
    fs.cpSync(wholeLog, audit, { recursive: true });
    const whole = path.join(base, 'whole.tar');
    const ok = await runCliCaptured(['audit', 'bundle', '--config', configFile, '--since', iso(t0 - 60_000), '--until', iso(t0 + 120_000), '--out', whole]);
    expect(ok.code, ok.err).toBe(0);
    const v = await verifyBundle(whole);
    expect(v.problems).toEqual([]);
    expect(v.events).toBe(2);
    expect(v.manifest!.witnessed_head_seq).toBe(JSON.parse(fs.readFileSync(witnessFile, 'utf8')).seq);
  });
});

describe('audit export of a log whose file was edited', () => {
  it('leaves the altered record out and says so (stderr and the audit.export event), instead of exporting it as the log\'s', async () => {
    const { base, dataDir, audit, key } = await newDataDir('vigil-export-altered-');
    const t0 = Date.now() - 3600_000;
    const w = await openAuditLog(audit, auditOptions(key));
    await w.append(sampleEvent(1, { type: 'ssh.exec', time: new Date(t0), session_id: 'S-1', details: { command: 'cat /etc/motd' } }));
    await w.append(sampleEvent(2, { type: 'ssh.exec', time: new Date(t0 + 1000), session_id: 'S-1', details: { command: 'rm -rf /srv/evidence' } }));
    await w.append(sampleEvent(3, { type: 'ssh.exec', time: new Date(t0 + 2000), session_id: 'S-1', details: { command: 'uptime' } }));
    await w.close();
    // Someone with write access to the data dir (not the key) rewrites one command in the segment file.
    const segment = fs.readdirSync(audit).find((f) => f.endsWith('.jsonl'))!;
    const file = path.join(audit, segment);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).toContain('rm -rf /srv/evidence');
    fs.writeFileSync(file, text.replace('rm -rf /srv/evidence', 'ls -l /srv/evidence/'));

    const out = path.join(base, 'export.jsonl');
    const r = await runCliCaptured(['audit', 'export', '--data', dataDir, '--format', 'jsonl', '--type', 'ssh.exec', '--out', out]);
    expect(r.code, r.err).toBe(0);
    const commands = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { details: { command: string } }).details.command);
    // The forged command never reaches the auditor as if the log held it.
    expect(commands).toEqual(['cat /etc/motd', 'uptime']);
    expect(r.err).toMatch(/1 record\(s\) left out: damaged, or their bytes do not match their hash/);
    const exportEvent = (await searchAuditLog(audit, { type: 'audit.export' })).records.map((x) => x.event).at(-1)!;
    expect(exportEvent.details).toMatchObject({ count: 2, left_out: 1 });
  });
});
