import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { describe, it, expect, afterAll } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { openAuditLog, listSegments, witnessPublisher, HEAD_FILE } from '../../recorder/audit/index.ts';
import { ZERO_HASH, encodeRecord, parseRecordLine, recordHash, segmentName } from '../../recorder/audit/record.ts';
import { silentLogger } from '../../src/log.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';
import { runCliCaptured } from '../support/cli.ts';

const cli = (args: string[]) => runCliCaptured(args);

/** A witness endpoint: keeps the newest head POSTed (never a lower seq), answers GET with it. */
function startWitnessServer(): Promise<{ url: string; close: () => void }> {
  let newest = '';
  const server = http.createServer((req, res) => {
    if (req.method === 'POST') {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const head = JSON.parse(body);
        if (!newest || head.seq >= JSON.parse(newest).seq) newest = body;
        res.end();
      });
      return;
    }
    res.end(newest);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${(server.address() as { port: number }).port}/head`, close: () => server.close() })));
}

// One witness server per log: a server shared by the tests could hold another log's head (a late POST
// from the previous test, or a higher seq from it), which this log's key did not sign.
const witnesses: { url: string; close: () => void }[] = [];
afterAll(() => witnesses.forEach((w) => w.close()));

/**
 * A data dir with a log written by the writer in stages, with a file witness and an HTTP witness receiving
 * every signed head; `copyAt` keeps a copy of the whole audit dir (with its head.json) after stage 1.
 */
async function writtenLog(): Promise<{ data: string; audit: string; witnessFile: string; witnessUrl: string; stage1: string; stage1Segments: string[] }> {
  const witness = await startWitnessServer();
  witnesses.push(witness);
  const data = tempDir();
  const key = makeSigningKey(path.join(data, 'ca'));
  const audit = path.join(data, 'audit');
  const witnessFile = path.join(tempDir(), 'witness.json');
  const pub = witnessPublisher({ file: witnessFile, url: witness.url, timeout: 5000 }, silentLogger());
  // Every head is published before the log is handed to the test (the writer does not wait for it).
  const published: Promise<void>[] = [];
  const opts = auditOptions(key.keyFile, { segmentMaxBytes: 4000, onSignedHead: (h) => void published.push(pub.publish(h)) });
  let w = await openAuditLog(audit, opts);
  for (let i = 0; i < 30; i++) await w.append(sampleEvent(i));
  await w.close();
  const stage1 = path.join(tempDir(), 'stage1');
  fs.cpSync(audit, stage1, { recursive: true });
  w = await openAuditLog(audit, opts);
  for (let i = 30; i < 60; i++) await w.append(sampleEvent(i));
  await w.close();
  await Promise.all(published);
  return { data, audit, witnessFile, witnessUrl: witness.url, stage1, stage1Segments: listSegments(stage1) };
}

const verify = (data: string, ...extra: string[]) => cli(['audit', 'verify', '--data', data, ...extra]);

describe('audit verify exit codes: OK only to what it can prove', () => {
  it('0 with a witness holding the last head (file or URL), 3 without a witness', async () => {
    const { data, witnessFile, witnessUrl } = await writtenLog();
    const none = await verify(data);
    expect(none.code).toBe(3);
    expect(none.out).toMatch(/intact and signed up to seq \d+: completeness NOT proven \(no witness given\)/);
    for (const source of [witnessFile, witnessUrl]) {
      const r = await verify(data, '--witness', source);
      expect(r.err).toBe('');
      expect(r.code).toBe(0);
      expect(r.out).toMatch(/audit log ok: complete up to the witnessed head seq \d+/);
    }
  });

  it('(a) history rewritten and re-chained without checkpoints (one user removed), writer.lock naming a live pid: 1, never 0', async () => {
    const { data, audit, witnessFile, witnessUrl } = await writtenLog();
    const kept: string[] = [];
    for (const seg of listSegments(audit)) {
      for (const line of fs.readFileSync(path.join(audit, seg), 'utf8').split('\n').filter(Boolean)) {
        const rec = parseRecordLine(line);
        if (typeof rec === 'string') throw new Error(rec);
        const ev = JSON.parse(rec.eventJson);
        if (ev.type === 'audit.checkpoint' || ev.actor.user === 'alice') continue;
        kept.push(rec.eventJson);
      }
      fs.rmSync(path.join(audit, seg));
    }
    for (const f of fs.readdirSync(audit)) if (f.endsWith('.meta.json')) fs.rmSync(path.join(audit, f));
    let prev = ZERO_HASH;
    const lines = kept.map((json, i) => {
      const hash = recordHash(i + 1, prev, json);
      const line = encodeRecord(i + 1, prev, hash, json);
      prev = hash;
      return line;
    });
    fs.writeFileSync(path.join(audit, segmentName(1, new Date())), lines.map((l) => l.replace(/\n$/, '')).join('\n') + '\n');
    fs.writeFileSync(path.join(audit, 'writer.lock'), `${process.pid}\n`); // "a writer is running"
    const withHead = await verify(data);
    expect(withHead.code).toBe(1); // head.json no longer matches
    fs.rmSync(path.join(audit, HEAD_FILE));
    const r = await verify(data);
    expect(r.code).toBe(1);
    expect(r.err).toContain('[no-checkpoint]');
    expect((await verify(data, '--witness', witnessFile)).code).toBe(1);
  });

  it('(b) a forged record appended after the last checkpoint: 4 with or without a witness, never 0', async () => {
    const { data, audit, witnessFile, witnessUrl } = await writtenLog();
    const seg = listSegments(audit).at(-1)!;
    const file = path.join(audit, seg);
    const last = fs.readFileSync(file, 'utf8').trimEnd().split('\n').at(-1)!;
    const rec = parseRecordLine(last) as Exclude<ReturnType<typeof parseRecordLine>, string>;
    const json = JSON.stringify({ ...sampleEvent(1, { details: { statement: 'forged' } }) });
    const hash = recordHash(rec.seq + 1, rec.hash, json);
    fs.appendFileSync(file, encodeRecord(rec.seq + 1, rec.hash, hash, json).replace(/\n$/, '') + '\n');
    for (const extra of [[], ['--witness', witnessFile], ['--witness', witnessUrl]]) {
      const r = await verify(data, ...extra);
      expect(r.code, extra.join(' ')).toBe(4);
      expect(r.out).toContain('intact, 1 record(s) after checkpoint');
    }
  });

  it('(c) rollback to an older copy with its older head.json: 1 with a witness, 3 without', async () => {
    const { data, audit, witnessFile, witnessUrl, stage1 } = await writtenLog();
    fs.rmSync(audit, { recursive: true });
    fs.cpSync(stage1, audit, { recursive: true });
    expect((await verify(data)).code).toBe(3);
    for (const source of [witnessFile, witnessUrl]) {
      const r = await verify(data, '--witness', source);
      expect(r.code).toBe(1);
      expect(r.err).toContain('[truncated]');
    }
  });

  it('(d) cut at a checkpoint with head.json deleted: 1 with a witness, 3 without', async () => {
    const { data, audit, witnessFile, witnessUrl, stage1Segments } = await writtenLog();
    // Keep exactly the segments of stage 1 (the last one ends with the close checkpoint), drop the rest.
    const lastKept = stage1Segments.at(-1)!;
    const keptText = fs.readFileSync(path.join(audit, lastKept), 'utf8').split('\n');
    const closeAt = keptText.findIndex((l) => l.includes('"reason":"close"'));
    fs.writeFileSync(path.join(audit, lastKept), keptText.slice(0, closeAt + 1).join('\n') + '\n');
    for (const seg of listSegments(audit)) if (seg > lastKept) fs.rmSync(path.join(audit, seg));
    fs.rmSync(path.join(audit, HEAD_FILE));
    expect((await verify(data)).code).toBe(3);
    expect((await verify(data, '--witness', witnessFile)).code).toBe(1);
    expect((await verify(data, '--witness', witnessUrl)).code).toBe(1);
  });

  it('a crash tail (4, "intact, N records after checkpoint") is told apart from a tampered tail (1)', async () => {
    const { data, audit } = await writtenLog();
    const seg = listSegments(audit).at(-1)!;
    const file = path.join(audit, seg);
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    // A crash: the writer's last records made it, the checkpoint after them did not (and half a line).
    fs.writeFileSync(file, lines.slice(0, -1).join('\n') + '\n{"seq":99,"prev":"ab');
    const crash = await verify(data);
    expect(crash.code).toBe(4);
    expect(crash.out).toMatch(/intact, \d+ record\(s\) after checkpoint.*partially written final line/);
    // Tampering with a record of that tail breaks its hash: invalid.
    const tampered = lines.slice(0, -1);
    tampered[tampered.length - 1] = tampered[tampered.length - 1].replace('"outcome":"success"', '"outcome":"failure"');
    fs.writeFileSync(file, tampered.join('\n') + '\n');
    const bad = await verify(data);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('[hash-mismatch]');
  });

  it('5 when the log or the witness cannot be read; the exit codes are in --help', async () => {
    const { data } = await writtenLog();
    expect((await verify(data, '--witness', path.join(tempDir(), 'nope.json'))).code).toBe(5);
    expect((await verify(data, '--witness', 'http://127.0.0.1:1/head')).code).toBe(5);
    expect((await verify(data, '--key', path.join(tempDir(), 'nope.pub'))).code).toBe(5);
    expect((await verify(data, '--bogus')).code).toBe(2);
    const help = await cli(['audit', 'verify', '--help']);
    for (const code of [0, 1, 2, 3, 4, 5]) expect(help.out).toMatch(new RegExp(`^    ${code}  `, 'm'));
  });
});
