import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseScpCommand, ScpObserver, type ScpObserveError, type ScpTransfer } from '../../proxies/ssh/scp/index.ts';
import { tempDir } from '../support/tmp.ts';
import { captureSize, readCapture, type Capture } from './sftp-support.ts';

const FAKE_SSH = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fake-ssh.sh');

/**
 * Run the stock `scp -O` (legacy protocol) with a stand-in for ssh that runs the remote `scp -t/-f`
 * locally through a tap: both ends are the real scp binary, the capture is what a relay would see.
 */
async function scp(args: string[], work: string): Promise<{ capture: Capture; command: string; ok: boolean; stderr: string }> {
  const cap = path.join(work, `scp-${Date.now()}-${Math.random().toString(36).slice(2)}`);
  const r = await promisify(execFile)('scp', ['-O', '-S', FAKE_SSH, ...args], { env: { ...process.env, VIGIL_TAP_CAPTURE: cap, VIGIL_TAP_NODE: process.execPath } }).then(
    (x) => ({ ok: true, stderr: x.stderr }),
    (e: { stderr: string }) => ({ ok: false, stderr: e.stderr }),
  );
  return { capture: readCapture(cap), command: fs.readFileSync(`${cap}.cmd`, 'utf8'), ...r };
}

function observe(command: string, capture: Capture, cut: (rec: Buffer) => number[] = () => []): { out: ScpTransfer[]; errors: ScpObserveError[] } {
  const out: ScpTransfer[] = [];
  const errors: ScpObserveError[] = [];
  const parsed = parseScpCommand(command);
  if (!parsed) throw new Error(`not an scp command: ${command}`);
  const obs = new ScpObserver({ command: parsed, onTransfer: (t) => out.push(t), onError: (e) => errors.push(e) });
  for (const rec of capture) {
    let prev = 0;
    for (const at of [...cut(rec.data), rec.data.length]) {
      if (at <= prev) continue;
      (rec.dir === 'c' ? obs.clientData : obs.serverData).call(obs, rec.data.subarray(prev, at));
      prev = at;
    }
  }
  obs.end();
  return { out, errors };
}

describe('ScpObserver on stock scp -O at both ends', () => {
  let work: string;
  let local: string;
  let remote: string;
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;

  beforeAll(() => {
    work = tempDir('vigil-scp-');
    local = path.join(work, 'local');
    remote = path.join(work, 'remote');
    fs.mkdirSync(path.join(local, 'tree', 'sub'), { recursive: true });
    fs.mkdirSync(remote);
    fs.writeFileSync(path.join(local, 'big.bin'), big);
    fs.writeFileSync(path.join(local, 'empty.txt'), '');
    fs.writeFileSync(path.join(local, 'tree', 'a.txt'), 'alpha\n');
    fs.writeFileSync(path.join(local, 'tree', 'sub', 'b.txt'), 'beta\n');
    fs.chmodSync(path.join(local, 'tree', 'a.txt'), 0o640);
  });
  afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

  it('upload: one file event per file with mode, size and bytes; identical files land', async () => {
    const r = await scp([path.join(local, 'big.bin'), path.join(local, 'empty.txt'), `h:${remote}/`], work);
    expect(r.ok).toBe(true);
    expect(fs.readFileSync(path.join(remote, 'big.bin')).equals(big)).toBe(true);
    expect(parseScpCommand(r.command)).toEqual({ direction: 'upload', recursive: false, paths: [`${remote}/`] });
    const { out, errors } = observe(r.command, r.capture);
    expect(errors).toEqual([]);
    expect(out).toEqual([
      { op: 'file', direction: 'upload', dirs: [], name: 'big.bin', mode: '0644', size: big.length, bytes: big.length, outcome: 'ok' },
      { op: 'file', direction: 'upload', dirs: [], name: 'empty.txt', mode: '0644', size: 0, bytes: 0, outcome: 'ok' },
    ]);
    // Any chunking gives the same: every byte alone, and every single split point of the non-data part.
    expect(observe(r.command, r.capture, (rec) => Array.from({ length: rec.length }, (_, i) => i))).toEqual({ out, errors: [] });
  });

  it('recursive upload and download report directories and nested files', async () => {
    const up = await scp(['-r', '-p', path.join(local, 'tree'), `h:${remote}/`], work);
    expect(up.ok).toBe(true);
    const down = await scp(['-r', `h:${remote}/tree`, path.join(work, 'back')], work);
    expect(down.ok).toBe(true);
    expect(fs.readFileSync(path.join(work, 'back', 'sub', 'b.txt'), 'utf8')).toBe('beta\n');
    for (const [r, direction] of [[up, 'upload'], [down, 'download']] as const) {
      const { out, errors } = observe(r.command, r.capture);
      expect(errors).toEqual([]);
      const files = out.filter((t) => t.op === 'file').map((t) => t.op === 'file' && [t.dirs.join('/'), t.name, t.mode, t.bytes, t.outcome]);
      expect(files.sort()).toEqual([
        ['tree', 'a.txt', '0640', 6, 'ok'],
        ['tree/sub', 'b.txt', '0644', 5, 'ok'],
      ]);
      expect(out.filter((t) => t.op === 'dir')).toEqual([
        { op: 'dir', direction, dirs: [], name: 'tree', mode: '0755', outcome: 'ok' },
        { op: 'dir', direction, dirs: ['tree'], name: 'sub', mode: '0755', outcome: 'ok' },
      ]);
      const total = captureSize(r.capture);
      const whole = JSON.stringify(out);
      for (let k = 1; k < total; k++) {
        let seen = 0;
        const got = observe(r.command, r.capture, (rec) => {
          const at = k - seen;
          seen += rec.length;
          return at > 0 && at < rec.length ? [at] : [];
        });
        if (JSON.stringify(got.out) !== whole || got.errors.length) expect({ k, got }).toEqual({ k, got: { out, errors: [] } });
      }
    }
  });

  it('download of a file the remote lacks, and upload into a missing directory, are reported as errors', async () => {
    const missing = await scp([`h:${remote}/nope.txt`, path.join(work, 'x')], work);
    expect(missing.ok).toBe(false);
    expect(observe(missing.command, missing.capture)).toEqual({
      out: [{ op: 'error', direction: 'download', from: 'source', message: `scp: ${remote}/nope.txt: No such file or directory` }],
      errors: [],
    });
    const badTarget = await scp([path.join(local, 'empty.txt'), `h:${remote}/no/such/dir/file.txt`], work);
    expect(badTarget.ok).toBe(false);
    const { out, errors } = observe(badTarget.command, badTarget.capture);
    expect(errors).toEqual([]);
    expect(out).toEqual([
      { op: 'file', direction: 'upload', dirs: [], name: 'empty.txt', mode: '0644', size: 0, bytes: 0, outcome: 'error', error: `scp: ${remote}/no/such/dir/file.txt: No such file or directory` },
    ]);
  });
});

describe('ScpObserver on bad input', () => {
  const upload = parseScpCommand('scp -t /tmp')!;
  it('stops with a typed error on a directive it does not know, and never throws', () => {
    const errors: ScpObserveError[] = [];
    const obs = new ScpObserver({ command: upload, onTransfer: () => {}, onError: (e) => errors.push(e) });
    obs.serverData(Buffer.from([0]));
    obs.clientData(Buffer.from('X nonsense\n'));
    obs.clientData(Buffer.from('C0644 3 a\nabc\0'));
    obs.end();
    expect(errors.map((e) => [e.code, e.fatal])).toEqual([['VIGIL_SCP_MALFORMED', true]]);
  });

  it('a transfer cut short is reported incomplete with the bytes seen', () => {
    const out: ScpTransfer[] = [];
    const obs = new ScpObserver({ command: upload, onTransfer: (t) => out.push(t) });
    obs.serverData(Buffer.from([0]));
    obs.clientData(Buffer.from('C0600 10 secret.txt\n'));
    obs.serverData(Buffer.from([0]));
    obs.clientData(Buffer.from('1234'));
    obs.end();
    expect(out).toEqual([{ op: 'file', direction: 'upload', dirs: [], name: 'secret.txt', mode: '0600', size: 10, bytes: 4, outcome: 'incomplete' }]);
  });

  it('random bytes never throw', () => {
    let seed = 3;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let run = 0; run < 200; run++) {
      const obs = new ScpObserver({ command: run % 2 ? upload : parseScpCommand('scp -f /x')!, onTransfer: () => {} });
      const junk = Buffer.from(Array.from({ length: 200 }, () => Math.floor(rnd() * 256)));
      expect(() => {
        obs.clientData(junk);
        obs.serverData(junk);
        obs.end();
      }).not.toThrow();
    }
  });

  it('parses the commands scp sends, and refuses others', () => {
    expect(parseScpCommand(`scp -r -p -f -- '/srv/my files/a b'`)).toEqual({ direction: 'download', recursive: true, paths: ['/srv/my files/a b'] });
    expect(parseScpCommand('scp -v -d -t "/x y/"')).toEqual({ direction: 'upload', recursive: false, paths: ['/x y/'] });
    expect(parseScpCommand('/usr/bin/scp -f a b')).toEqual({ direction: 'download', recursive: false, paths: ['a', 'b'] });
    expect(parseScpCommand('ls -t /tmp')).toBeNull();
    expect(parseScpCommand('scp /a /b')).toBeNull();
    expect(parseScpCommand("scp -t 'unterminated")).toBeNull();
  });
});
