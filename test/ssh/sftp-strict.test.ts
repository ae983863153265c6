import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';
import { encodePacket, T } from '../ssh-codec/sftp-support.ts';
import { init, mkdir, rawSftp } from './raw-sftp.ts';

/**
 * Never relay blind: when vigil cannot decode what passes on an sftp channel, it forwards none of it,
 * records ssh.sftp.undecodable and closes the channel with a message — so a file operation sent after
 * (or hidden in) an undecodable packet never reaches the target.
 */
describe('sftp: what vigil cannot decode is not relayed', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dir = tempDir('vigil-sftp-strict-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const open = () => rawSftp([...w.opts(alice), '-s', `${w.sshd.user}@web1@127.0.0.1`, 'sftp']);

  /** A working session (INIT, one mkdir answered), then `bad` followed by a mkdir that must not happen. */
  async function afterGoodStart(name: string, bad: (id: number, p: string) => Buffer, code: string) {
    const s = open();
    s.send(init());
    await s.replies(1);
    const ok = path.join(dir, `${name}-ok`);
    s.send(mkdir(1, ok));
    await s.replies(2);
    const never = path.join(dir, `${name}-never`);
    s.send(Buffer.concat([bad(2, never), mkdir(3, `${never}-2`)]));
    expect(await s.exited).not.toBe(0);
    expect(s.stderr()).toContain('vigil: the SFTP stream could not be decoded');
    expect(fs.existsSync(ok)).toBe(true);
    expect(fs.existsSync(never)).toBe(false);
    expect(fs.existsSync(`${never}-2`)).toBe(false);
    // The good mkdir before it is on record; the refusal is recorded in the same session.
    const good = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === 'mkdir' && e.details.path === ok);
    const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp.undecodable' && e.session_id === good.session_id);
    expect(ev.outcome).toBe('failure');
    expect(String(ev.details.error)).toMatch(new RegExp(`^${code}`));
    expect(w.eventsOf('ssh.sftp', (e) => String(e.details.path ?? '').startsWith(never))).toHaveLength(0);
    return ev;
  }

  it('an unknown packet type', async () => {
    await afterGoodStart('type', (id) => encodePacket([{ u8: 99 }, { u32: id }, { str: 'x' }]), 'VIGIL_SFTP_MALFORMED');
  });

  it('trailing bytes inside a packet (a mkdir with bytes after its attributes)', async () => {
    await afterGoodStart('trailing', (id, p) => encodePacket([{ u8: T.MKDIR }, { u32: id }, { str: p }, { attrs: {} }, { u32: 0xdeadbeef }]), 'VIGIL_SFTP_MALFORMED');
  });

  it('a length that does not match (WRITE data length vs packet length)', async () => {
    await afterGoodStart('length', (id) => encodePacket([{ u8: T.WRITE }, { u32: id }, { str: 'h' }, { u64: 0 }, { u32: 10 }, { u8: 1 }]), 'VIGIL_SFTP_MALFORMED');
  });

  it('an extended request vigil does not know', async () => {
    await afterGoodStart('ext', (id, p) => encodePacket([{ u8: T.EXTENDED }, { u32: id }, { str: 'mystery@example.com' }, { str: p }]), 'VIGIL_SFTP_MALFORMED');
  });

  it('a request id reused while in flight, and a second INIT (out of phase)', async () => {
    await afterGoodStart('reuse', (id, p) => Buffer.concat([mkdir(id, `${p}-a`), mkdir(id, p)]), 'VIGIL_SFTP_OUT_OF_PHASE');
    await afterGoodStart('reinit', () => init(), 'VIGIL_SFTP_OUT_OF_PHASE');
  });

  it('legacy scp: a directive vigil cannot follow is not relayed (nor anything after it)', async () => {
    const target = path.join(dir, 'scp-sink');
    fs.mkdirSync(target);
    const command = `scp -t ${target}`;
    // Two well-formed files around a line that is no scp directive; one write, so one chunk is likely,
    // but whatever the chunking, nothing from the bad line on may arrive.
    const input = Buffer.concat([Buffer.from('C0644 3 first.txt\nabc\0'), Buffer.from('Zbogus directive\n'), Buffer.from('C0644 3 never.txt\nxyz\0')]);
    const r = await w.run('ssh', [...w.opts(alice), `${w.sshd.user}@web1@127.0.0.1`, command], input);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('vigil: the scp stream could not be decoded');
    expect(fs.existsSync(path.join(target, 'never.txt'))).toBe(false);
    const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.scp.undecodable' && e.details.command === command);
    expect(String(ev.details.error)).toMatch(/^VIGIL_SCP_MALFORMED/);
    // Whatever reached the target is on record: a file there has its ssh.scp event.
    for (const f of fs.readdirSync(target)) {
      expect(w.eventsOf('ssh.scp', (e) => e.session_id === ev.session_id && e.details.path === f), f).toHaveLength(1);
    }
  });

  it('an old-version INIT, and a request before INIT: nothing reaches the target', async () => {
    for (const [name, first, code] of [
      ['v2', init(2), 'VIGIL_SFTP_UNSUPPORTED_VERSION'],
      ['noinit', mkdir(1, path.join(dir, 'noinit-first')), 'VIGIL_SFTP_OUT_OF_PHASE'],
    ] as const) {
      const s = open();
      const never = path.join(dir, `${name}-never`);
      s.send(Buffer.concat([first, mkdir(2, never)]));
      expect(await s.exited).not.toBe(0);
      expect(s.stderr()).toContain('vigil: the SFTP stream could not be decoded');
      expect(fs.existsSync(never)).toBe(false);
      expect(fs.existsSync(path.join(dir, 'noinit-first'))).toBe(false);
      await w.gw.waitForEvent((e) => e.type === 'ssh.sftp.undecodable' && String(e.details.error).startsWith(code));
    }
  });
});

/** Strict durability: a file-changing SFTP request reaches the target only once ssh.sftp.start is durable. */
describe('sftp with audit.durability strict', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld({ config: { audit: { durability: 'strict' } } });
    alice = await w.issue();
    dir = tempDir('vigil-sftp-durable-');
    fs.chmodSync(dir, 0o777);
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const open = () => rawSftp([...w.opts(alice), '-s', `${w.sshd.user}@web1@127.0.0.1`, 'sftp']);

  it('stock sftp -b works unchanged, each change recorded as ssh.sftp.start before its ssh.sftp', async () => {
    const src = path.join(dir, 'src.txt');
    fs.writeFileSync(src, 'strict\n');
    const base = path.join(dir, 'batch');
    const batch = [`mkdir ${base}`, `put ${src} ${base}/a`, `rename ${base}/a ${base}/b`, `get ${base}/b ${dir}/got`, `rm ${base}/b`, `rmdir ${base}`].join('\n');
    const r = await w.run('sftp', [...w.opts(alice), '-b', '-', 'web1@127.0.0.1'], batch + '\n');
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(dir, 'got'), 'utf8')).toBe('strict\n');
    for (const [op, key, value] of [['mkdir', 'path', base], ['open', 'path', `${base}/a`], ['rename', 'old_path', `${base}/a`], ['remove', 'path', `${base}/b`], ['rmdir', 'path', base]] as const) {
      const end = await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.details.op === op && e.details[key] === value);
      const start = w.eventsOf('ssh.sftp.start', (e) => e.details.op === op && e.details[key] === value);
      expect(start, `${op} ${value}`).toHaveLength(1);
      expect(w.gw.events.indexOf(start[0])).toBeLessThan(w.gw.events.indexOf(end));
    }
    // Reads are not intents.
    expect(w.eventsOf('ssh.sftp.start', (e) => e.details.path === `${base}/b` && e.details.op === 'open')).toHaveLength(0);
  });

  it('a held record holds the request; a record that cannot be written means it never reaches the target', async () => {
    const events = w.gw.gw.services.events;
    const real = events.beforeForward.bind(events);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    events.beforeForward = (input, onFailure) => real(input, onFailure)!.then(() => held);
    try {
      const s = open();
      s.send(init());
      await s.replies(1);
      const target = path.join(dir, 'held-dir');
      s.send(mkdir(1, target));
      await w.gw.waitForEvent((e) => e.type === 'ssh.sftp.start' && e.details.path === target);
      await new Promise((r) => setTimeout(r, 300));
      expect(fs.existsSync(target)).toBe(false);
      release();
      await s.replies(2);
      expect(fs.existsSync(target)).toBe(true);

      events.beforeForward = () => Promise.reject(new Error('ENOSPC: no space left on device'));
      const refused = path.join(dir, 'refused-dir');
      s.send(mkdir(2, refused));
      expect(await s.exited).not.toBe(0);
      expect(s.stderr()).toContain('vigil: audit log unavailable');
      expect(fs.existsSync(refused)).toBe(false);
    } finally {
      events.beforeForward = real;
    }
  });
});
