import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SftpObserver, type SftpOperation, type SftpObserveError } from '../../proxies/ssh/sftp/index.ts';
import { SftpFramer } from '../../proxies/ssh/sftp/framer.ts';
import { tempDir } from '../support/tmp.ts';
import { captureSftpBatch, captureSize, DirectSftp, encodePacket, observe, statusOf, T, type Capture } from './sftp-support.ts';

/** Cut function splitting the whole capture (all records end to end) at global byte offset `k`. */
function splitAt(capture: Capture, k: number): (rec: Buffer, i: number) => number[] {
  const starts: number[] = [];
  let n = 0;
  for (const r of capture) { starts.push(n); n += r.data.length; }
  return (_rec, i) => (k > starts[i] && k < starts[i] + capture[i].data.length ? [k - starts[i]] : []);
}
const everyByte = (rec: Buffer) => Array.from({ length: rec.length }, (_, i) => i);

function seeded(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
}

describe('SftpObserver on stock sftp ↔ OpenSSH sftp-server', () => {
  let work: string;
  let root: string;
  beforeAll(() => {
    work = tempDir('vigil-sftp-');
    root = path.join(work, 'root');
    fs.mkdirSync(root);
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('reports put/get/chmod/rename/mkdir/rmdir/symlink/ln/cp/rm with paths, flags, byte counts and failures', async () => {
    const up = Buffer.alloc(300_000);
    for (let i = 0; i < up.length; i++) up[i] = (i * 31) & 0xff;
    fs.writeFileSync(path.join(work, 'up.bin'), up);
    const { capture } = await captureSftpBatch(
      [
        `put ${work}/up.bin up.bin`,
        `get up.bin ${work}/down.bin`,
        'chmod 640 up.bin',
        'rename up.bin moved.bin',
        'mkdir d',
        'rmdir d',
        'symlink moved.bin link',
        'ln moved.bin hard',
        'cp hard copied.bin',
        '-rm nothere',
        '-rmdir nodir',
        'rm hard',
      ],
      root,
      work,
    );
    expect(fs.readFileSync(path.join(work, 'down.bin')).equals(up)).toBe(true);
    expect(fs.readlinkSync(path.join(root, 'link'))).toBe('moved.bin');
    expect(fs.readFileSync(path.join(root, 'copied.bin')).equals(up)).toBe(true);

    const { ops, errors } = observe(capture);
    expect(errors).toEqual([]);
    const p = (name: string) => path.join(root, name);
    // `put` and `cp` create the file with the source's mode (OPEN attributes), which is on record.
    const localMode = (fs.statSync(path.join(work, 'up.bin')).mode & 0o777).toString(8).padStart(4, '0');
    expect(ops).toEqual<SftpOperation[]>([
      { op: 'open', path: p('up.bin'), flags: ['write', 'create', 'truncate'], attrs: { permissions: localMode }, outcome: 'ok' },
      { op: 'close', path: p('up.bin'), bytesRead: 0, bytesWritten: up.length, outcome: 'ok' },
      { op: 'open', path: p('up.bin'), flags: ['read'], outcome: 'ok' },
      { op: 'close', path: p('up.bin'), bytesRead: up.length, bytesWritten: 0, outcome: 'ok' },
      { op: 'setstat', path: p('up.bin'), attrs: { permissions: '0640' }, via: 'path', outcome: 'ok' },
      { op: 'rename', oldPath: p('up.bin'), newPath: p('moved.bin'), posix: true, outcome: 'ok' },
      { op: 'mkdir', path: p('d'), attrs: { permissions: '0777' }, outcome: 'ok' },
      { op: 'rmdir', path: p('d'), outcome: 'ok' },
      // OpenSSH sends (target, link): the target stays as typed, relative to the link.
      { op: 'symlink', linkPath: p('link'), targetPath: 'moved.bin', outcome: 'ok' },
      { op: 'hardlink', oldPath: p('moved.bin'), newPath: p('hard'), outcome: 'ok' },
      // `cp` is a server-side copy between two handles: opened, copied, closed with no bytes through the channel.
      { op: 'open', path: p('hard'), flags: ['read'], outcome: 'ok' },
      { op: 'open', path: p('copied.bin'), flags: ['write', 'create', 'truncate'], attrs: { permissions: '0640' }, outcome: 'ok' },
      { op: 'copy', fromPath: p('hard'), toPath: p('copied.bin'), length: 0, outcome: 'ok' },
      { op: 'close', path: p('hard'), bytesRead: 0, bytesWritten: 0, outcome: 'ok' },
      { op: 'close', path: p('copied.bin'), bytesRead: 0, bytesWritten: 0, outcome: 'ok' },
      { op: 'remove', path: p('nothere'), outcome: 'error', status: { code: 2, name: 'NO_SUCH_FILE', message: 'No such file' } },
      { op: 'rmdir', path: p('nodir'), outcome: 'error', status: { code: 2, name: 'NO_SUCH_FILE', message: 'No such file' } },
      { op: 'remove', path: p('hard'), outcome: 'ok' },
    ]);

    // The same events however the bytes are cut: one byte at a time, and random chunks.
    expect(observe(capture, everyByte)).toEqual({ ops, errors: [] });
    const rnd = seeded(7);
    for (let run = 0; run < 20; run++) {
      const cut = (rec: Buffer) => {
        const cuts: number[] = [];
        for (let at = 0; at < rec.length; at += 1 + Math.floor(rnd() * 9000)) cuts.push(at);
        return cuts;
      };
      expect(observe(capture, cut)).toEqual({ ops, errors: [] });
    }
  });

  it('gives the same events when the stream is split at every byte boundary', async () => {
    fs.writeFileSync(path.join(work, 'small.txt'), 'hello sftp\n'.repeat(40));
    const { capture } = await captureSftpBatch(
      [`put ${work}/small.txt s.txt`, `get s.txt ${work}/s-back.txt`, 'chmod 600 s.txt', 'rename s.txt t.txt', 'mkdir dd', 'rmdir dd', 'symlink t.txt ln', 'rm t.txt', 'rm ln'],
      root,
      work,
    );
    const whole = observe(capture);
    expect(whole.errors).toEqual([]);
    expect(whole.ops.map((o) => o.op)).toEqual(['open', 'close', 'open', 'close', 'setstat', 'rename', 'mkdir', 'rmdir', 'symlink', 'remove', 'remove']);
    const total = captureSize(capture);
    for (let k = 1; k < total; k++) {
      const got = observe(capture, splitAt(capture, k));
      if (JSON.stringify(got) !== JSON.stringify(whole)) expect({ k, got }).toEqual({ k, got: whole });
    }
  });
});

describe('SftpObserver on requests the stock client does not send', () => {
  let work: string;
  let sftp: DirectSftp;
  const ops: SftpOperation[] = [];
  beforeAll(async () => {
    work = tempDir('vigil-sftp-direct-');
    sftp = new DirectSftp(work);
    await sftp.init();
  });
  afterAll(async () => {
    await sftp.close();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('reports excl/append opens, refused opens, fsetstat, lsetstat, streamed writes and dangling handles', async () => {
    const f = path.join(work, 'f.txt');
    // READ|WRITE|CREAT|EXCL: created; the same again fails.
    let h = await sftp.open(f, 0x01 | 0x02 | 0x08 | 0x20);
    const big = Buffer.alloc(70_000, 0x61);
    for (const [off, chunk] of [[0, big.subarray(0, 40_000)], [40_000, big.subarray(40_000)]] as const) {
      expect(statusOf(await sftp.call(T.WRITE, { str: h }, { u64: off }, { str: chunk }))).toBe(0);
    }
    expect(statusOf(await sftp.call(T.READ, { str: h }, { u64: 0 }, { u32: 1000 }))).toBe(-1);
    expect(statusOf(await sftp.call(T.FSETSTAT, { str: h }, { attrs: { perms: 0o600, times: [1_700_000_000, 1_700_000_001] } }))).toBe(0);
    expect(statusOf(await sftp.call(T.CLOSE, { str: h }))).toBe(0);
    expect(statusOf(await sftp.call(T.OPEN, { str: f }, { u32: 0x02 | 0x08 | 0x20 }, { attrs: {} }))).toBe(4);
    // WRITE|APPEND
    h = await sftp.open(f, 0x02 | 0x04);
    expect(statusOf(await sftp.call(T.WRITE, { str: h }, { u64: 0 }, { str: 'tail' }))).toBe(0);
    expect(statusOf(await sftp.call(T.CLOSE, { str: h }))).toBe(0);
    expect(statusOf(await sftp.call(T.OPEN, { str: path.join(work, 'missing') }, { u32: 0x01 }, { attrs: {} }))).toBe(2);
    expect(statusOf(await sftp.call(T.EXTENDED, { str: 'lsetstat@openssh.com' }, { str: f }, { attrs: { perms: 0o644 } }))).toBe(0);
    expect(statusOf(await sftp.call(T.SETSTAT, { str: f }, { attrs: { size: 10 } }))).toBe(0);
    // Directory handles resolve but produce no events.
    const dh = await sftp.call(T.OPENDIR, { str: work });
    expect(dh.type).toBe(102);
    // A file left open when the channel ends.
    h = await sftp.open(f, 0x01);
    await sftp.call(T.READ, { str: h }, { u64: 0 }, { u32: 100 });
    expect(fs.statSync(f).size).toBe(10);

    const errors: SftpObserveError[] = [];
    const obs = new SftpObserver({ onOperation: (op) => ops.push(op), onError: (e) => errors.push(e) });
    for (const rec of sftp.capture) for (let i = 0; i < rec.data.length; i += 333) (rec.dir === 'c' ? obs.clientData : obs.serverData).call(obs, rec.data.subarray(i, i + 333));
    obs.end();
    expect(errors).toEqual([]);
    expect(ops).toEqual<SftpOperation[]>([
      { op: 'open', path: f, flags: ['read', 'write', 'create', 'excl'], outcome: 'ok' },
      { op: 'setstat', path: f, attrs: { permissions: '0600', atime: 1_700_000_000, mtime: 1_700_000_001 }, via: 'handle', outcome: 'ok' },
      { op: 'close', path: f, bytesRead: 1000, bytesWritten: 70_000, outcome: 'ok' },
      { op: 'open', path: f, flags: ['write', 'create', 'excl'], outcome: 'error', status: { code: 4, name: 'FAILURE', message: 'Failure' } },
      { op: 'open', path: f, flags: ['write', 'append'], outcome: 'ok' },
      { op: 'close', path: f, bytesRead: 0, bytesWritten: 4, outcome: 'ok' },
      { op: 'open', path: path.join(work, 'missing'), flags: ['read'], outcome: 'error', status: { code: 2, name: 'NO_SUCH_FILE', message: 'No such file' } },
      { op: 'setstat', path: f, attrs: { permissions: '0644' }, via: 'nofollow', outcome: 'ok' },
      { op: 'setstat', path: f, attrs: { size: 10 }, via: 'path', outcome: 'ok' },
      { op: 'open', path: f, flags: ['read'], outcome: 'ok' },
      { op: 'close', path: f, bytesRead: 10, bytesWritten: 0, outcome: 'incomplete' },
    ]);
  });
});

describe('SftpObserver on bad input', () => {
  const req = (type: number, id: number, ...rest: Parameters<typeof encodePacket>[0]) => encodePacket([{ u8: type }, { u32: id }, ...rest]);
  const init = encodePacket([{ u8: T.INIT }, { u32: 3 }]);
  const version = encodePacket([{ u8: 2 }, { u32: 3 }]);
  function make() {
    const ops: SftpOperation[] = [];
    const errors: SftpObserveError[] = [];
    return { ops, errors, obs: new SftpObserver({ onOperation: (o) => ops.push(o), onError: (e) => errors.push(e), maxPacket: 64 * 1024, maxPending: 8 }) };
  }

  it('a zero-length packet is a fatal typed error and later bytes are ignored', () => {
    const { obs, errors, ops } = make();
    obs.clientData(init);
    obs.clientData(Buffer.from([0, 0, 0, 0, 1, 2, 3]));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'VIGIL_SFTP_MALFORMED', fatal: true, direction: 'client' });
    expect(obs.stopped).toBe(true);
    obs.clientData(req(T.REMOVE, 1, { str: '/x' }));
    obs.serverData(encodePacket([{ u8: 101 }, { u32: 1 }, { u32: 0 }, { str: '' }, { str: '' }]));
    obs.end();
    expect(ops).toEqual([]);
    expect(errors).toHaveLength(1);
  });

  it('an oversized packet is refused before any of it is buffered', () => {
    const { obs, errors } = make();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0x7fff_ffff);
    obs.serverData(head);
    expect(errors[0]).toMatchObject({ code: 'VIGIL_SFTP_OVERSIZED', fatal: true, direction: 'server' });
  });

  it('a string running past its packet, an unknown type and an old version are malformed', () => {
    for (const bad of [
      encodePacket([{ u8: T.REMOVE }, { u32: 1 }, { u32: 500 }, { u8: 0x41 }]),
      encodePacket([{ u8: 99 }, { u32: 1 }]),
      encodePacket([{ u8: T.WRITE }, { u32: 1 }, { str: 'h' }, { u64: 0 }, { u32: 10 }, { u8: 1 }]),
    ]) {
      const { obs, errors } = make();
      obs.clientData(init);
      obs.clientData(bad);
      expect(errors.map((e) => e.code)).toEqual(['VIGIL_SFTP_MALFORMED']);
    }
    const { obs, errors } = make();
    obs.clientData(encodePacket([{ u8: T.INIT }, { u32: 2 }]));
    expect(errors.map((e) => e.code)).toEqual(['VIGIL_SFTP_UNSUPPORTED_VERSION']);
  });

  it('a reply nobody asked for is reported and observation goes on', () => {
    const { obs, errors, ops } = make();
    obs.clientData(init);
    obs.serverData(version);
    obs.serverData(encodePacket([{ u8: 101 }, { u32: 42 }, { u32: 0 }, { str: 'ok' }, { str: '' }]));
    obs.clientData(req(T.MKDIR, 1, { str: '/d' }, { attrs: {} }));
    obs.serverData(encodePacket([{ u8: 101 }, { u32: 1 }, { u32: 0 }, { str: 'ok' }, { str: '' }]));
    expect(errors.map((e) => [e.code, e.fatal])).toEqual([['VIGIL_SFTP_UNEXPECTED_REPLY', false]]);
    expect(ops).toEqual([{ op: 'mkdir', path: '/d', attrs: {}, outcome: 'ok' }]);
  });

  it('reports a path that is not UTF-8 with its odd bytes escaped', () => {
    const { obs, errors, ops } = make();
    obs.clientData(init);
    obs.clientData(req(T.REMOVE, 1, { str: Buffer.from([0x2f, 0x61, 0xff, 0xfe]) }));
    obs.serverData(encodePacket([{ u8: 101 }, { u32: 1 }, { u32: 3 }, { str: 'Permission denied' }, { str: '' }]));
    expect(errors).toEqual([]);
    expect(ops).toEqual([{ op: 'remove', path: '/a\\xff\\xfe', outcome: 'error', status: { code: 3, name: 'PERMISSION_DENIED', message: 'Permission denied' } }]);
  });

  it('too many requests in flight stop observation (bounded memory)', () => {
    const { obs, errors } = make();
    obs.clientData(init);
    for (let id = 0; id < 9; id++) obs.clientData(req(T.STAT, id, { str: '/' }));
    expect(errors.map((e) => e.code)).toEqual(['VIGIL_SFTP_TOO_MANY_PENDING']);
  });

  it('requests left unanswered at end are reported incomplete, and a cut packet as truncated', () => {
    const { obs, errors, ops } = make();
    obs.clientData(init);
    obs.clientData(req(T.RENAME, 1, { str: '/a' }, { str: '/b' }));
    obs.clientData(req(T.REMOVE, 2, { str: '/c' }).subarray(0, 7));
    obs.end();
    expect(ops).toEqual([{ op: 'rename', oldPath: '/a', newPath: '/b', posix: false, outcome: 'incomplete' }]);
    expect(errors.map((e) => [e.code, e.fatal])).toEqual([['VIGIL_SFTP_TRUNCATED', false]]);
  });

  it('never throws on random bytes, in any chunking', () => {
    const rnd = seeded(1);
    for (let run = 0; run < 300; run++) {
      const { obs } = make();
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 400) }, () => Math.floor(rnd() * 256)));
      // Half the runs start with a valid prefix, so the decoders (not only framing) see junk.
      const stream = run % 2 ? Buffer.concat([init, junk]) : junk;
      expect(() => {
        for (let i = 0; i < stream.length; i += 1 + Math.floor(rnd() * 50)) obs.clientData(stream.subarray(i, i + 50));
        obs.serverData(junk);
        obs.end();
      }).not.toThrow();
    }
  });

  it('a throwing consumer does not break observation', () => {
    let seen = 0;
    const obs = new SftpObserver({ onOperation: () => { seen++; throw new Error('consumer bug'); } });
    obs.clientData(init);
    for (const id of [1, 2]) {
      obs.clientData(req(T.RMDIR, id, { str: '/d' }));
      obs.serverData(encodePacket([{ u8: 101 }, { u32: id }, { u32: 0 }, { str: '' }, { str: '' }]));
    }
    expect(seen).toBe(2);
  });
});

describe('SftpFramer', () => {
  it('hands over only the head of a streamed packet and skips its payload', () => {
    const got: [number, number][] = [];
    const framer = new SftpFramer({ maxPacket: 1 << 20, headBytes: 64, streamed: (t) => t === 103, onPacket: (b, len) => got.push([b.length, len]) });
    const data = encodePacket([{ u8: 103 }, { u32: 1 }, { str: Buffer.alloc(500_000) }]);
    const status = encodePacket([{ u8: 101 }, { u32: 2 }, { u32: 0 }, { str: 'x'.repeat(100) }, { str: '' }]);
    const stream = Buffer.concat([data, status, data]);
    for (let i = 0; i < stream.length; i += 4096) framer.push(stream.subarray(i, i + 4096));
    expect(got).toEqual([[64, data.length - 4], [status.length - 4, status.length - 4], [64, data.length - 4]]);
    expect(framer.midPacket).toBe(false);
  });
});
