import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import { vigilKnownHosts } from '../../proxies/ssh/known-hosts.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';

/** The process running `sleep <tag>` and its ancestors' pids and names, from /proc. */
function ancestorsOf(tag: string): { pid: number; comm: string; cmdline: string }[] {
  const read = (pid: number) => {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return {
      pid,
      ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]),
      comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')),
      cmdline: fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim(),
    };
  };
  const sleeper = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).find((pid) => {
    try { return read(pid).cmdline === `sleep ${tag}`; } catch { return false; }
  });
  if (sleeper === undefined) return [];
  const out = [];
  for (let p = read(sleeper); p.pid > 1; p = read(p.ppid)) out.push(p);
  return out;
}

/**
 * Issue #17 item 3: stock OpenSSH clients cannot tell vigil from the backend, and refusals say why once.
 * Default clock skew (60 s) on purpose: the expiry test relies on the allowance NOT covering not_after.
 */
describe('ssh transparency: certificates', () => {
  let w: SshWorld;
  beforeAll(async () => {
    w = await startWorld();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('a certificate that expired seconds ago (inside the skew window) is refused at authentication, never opened', async () => {
    const old = await w.issue({ ttlMs: 1000 });
    // Let it expire: now is past not_after by ~1.5 s, well inside the 60 s skew allowance.
    await new Promise((r) => setTimeout(r, 2500));
    const r = await w.run('ssh', [...w.opts(old), 'web1@127.0.0.1', 'echo reached-the-target']);
    expect(r.code).toBe(255);
    expect(r.stdout).not.toContain('reached-the-target');
    expect(r.stderr).toContain('vigil: certificate expired');
    expect(r.stderr).toMatch(/Permission denied/);
    const failure = await w.gw.waitForEvent((e) => e.type === 'auth.failure' && e.actor.cert_serial === old.creds.serial);
    expect(failure.details.reason).toBe('expired');
    expect(w.eventsOf('session.start', (e) => e.actor.cert_serial === old.creds.serial)).toHaveLength(0);
    expect(w.eventsOf('auth.success', (e) => e.actor.cert_serial === old.creds.serial)).toHaveLength(0);
  });

  it('a refused certificate gets one banner, not one per authentication attempt', async () => {
    const old = await w.issue({ ttlMs: 1000 });
    await new Promise((r) => setTimeout(r, 2500));
    // The client offers the certificate, then the plain key behind it: two refusals, one explanation.
    const r = await w.run('ssh', [...w.opts(old), 'web1@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(w.eventsOf('auth.failure', (e) => e.actor.cert_serial === old.creds.serial || e.details.reason === 'plain_key').length).toBeGreaterThan(1);
    expect(r.stderr.match(/vigil:/g)).toHaveLength(1);
    expect(r.stderr).toContain('vigil: certificate expired');
  });
});

describe('ssh transparency: a backend that dies', () => {
  let w: SshWorld;
  beforeAll(async () => {
    w = await startWorld();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('ends the session with reason backend_closed when the target sshd session process is killed', async () => {
    const alice = await w.issue();
    const tag = String(40_000 + Math.floor(Math.random() * 9_999));
    const c = spawnClient('ssh', [...w.opts(alice), 'web1@127.0.0.1', `echo started; exec sleep ${tag}`]);
    await waitFor(() => c.stdout().includes('started'), 10_000, 'remote command started');
    const start = w.eventsOf('session.start', (e) => e.actor.cert_serial === alice.creds.serial)[0]!;
    // The per-connection sshd processes (not the listener, started with -D) between us and the command.
    const chain = ancestorsOf(tag);
    const sshds = chain.filter((p) => p.comm.startsWith('sshd') && !p.cmdline.includes(' -D '));
    expect(sshds.length).toBeGreaterThan(0);
    for (const p of sshds) process.kill(p.pid, 'SIGKILL');
    // The remote sleep outlives its killed sshd (reparented to init): end it too, or every run leaves one.
    try {
      process.kill(chain[0].pid, 'SIGKILL');
    } catch {
      // already gone
    }
    expect(await c.exited).toBe(255);
    expect(c.stderr()).toContain('vigil: the connection to web1 was lost.');
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
    expect(end.details.reason).toBe('backend_closed');
  });
});

describe('ssh transparency: git over ssh', () => {
  let w: SshWorld;
  let dir: string;
  beforeAll(async () => {
    // The target accepts GIT_PROTOCOL as a git server must for v2 (sshd accumulates AcceptEnv lines).
    w = await startWorld({ sshd: { extraConfig: ['AcceptEnv GIT_PROTOCOL'] } });
    dir = tempDir('vigil-ssh-git-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('git clone through vigil negotiates protocol v2 (GIT_PROTOCOL passes by default)', async () => {
    const git = (args: string[], cwd = dir, env: Record<string, string> = {}) =>
      execFileSync('git', args, { cwd, env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: dir, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const work = path.join(dir, 'work');
    fs.mkdirSync(work);
    git(['init', '-q', '-b', 'main'], work);
    fs.writeFileSync(path.join(work, 'README'), 'through vigil\n');
    git(['add', 'README'], work);
    git(['-c', 'user.name=t', '-c', 'user.email=t@example.com', 'commit', '-q', '-m', 'first'], work);
    const bare = path.join(dir, 'repo.git');
    git(['clone', '-q', '--bare', work, bare]);

    const alice = await w.issue();
    const sshCommand = ['ssh', ...w.opts(alice)].map((a) => `'${a}'`).join(' ');
    const trace = path.join(dir, 'packet-trace');
    // Asynchronously: the gateway runs in this process.
    await promisify(execFile)('git', ['-c', 'protocol.version=2', 'clone', '-q', `web1@127.0.0.1:${bare}`, path.join(dir, 'clone')], {
      cwd: dir,
      env: { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: dir, GIT_SSH_COMMAND: sshCommand, GIT_TRACE_PACKET: trace },
      timeout: 30_000,
    });
    expect(fs.readFileSync(path.join(dir, 'clone', 'README'), 'utf8')).toBe('through vigil\n');
    // The server answers "version 2" only when GIT_PROTOCOL=version=2 reached it.
    const t = fs.readFileSync(trace, 'utf8');
    expect(t).toMatch(/clone< version 2\n/);
    const execs = w.eventsOf('ssh.exec.start', (e) => e.actor.cert_serial === alice.creds.serial);
    expect(execs.map((e) => String(e.details.command))).toEqual([expect.stringContaining('git-upload-pack')]);
    expect(w.eventsOf('ssh.request', (e) => e.details.request === 'env' && e.actor.cert_serial === alice.creds.serial)).toHaveLength(0);
  });
});

describe('ssh transparency: scp -O and refused forwards', () => {
  let w: SshWorld;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    dir = tempDir('vigil-ssh-scpfwd-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an scp -O upload event names the destination path on the target', async () => {
    const alice = await w.issue();
    const src = path.join(dir, 'local-name.txt');
    fs.writeFileSync(src, 'uploaded\n');
    const dest = path.join(w.sshd.dir, 'renamed-on-target.txt');
    const r = await w.run('scp', [...w.opts(alice), '-O', src, `web1@127.0.0.1:${dest}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(dest, 'utf8')).toBe('uploaded\n');
    const up = await w.gw.waitForEvent((e) => e.type === 'ssh.scp' && e.actor.cert_serial === alice.creds.serial && e.details.direction === 'upload');
    // The wire only carries the local name; the destination comes from the target's `scp -t` command.
    expect(up.details).toMatchObject({ op: 'file', path: 'local-name.txt', destination: dest, result: 'ok' });
  });

  it('a refused -L forward names the rule, to the client (channel open failure) and in the event', async () => {
    const nofwd = await w.issue({ roles: ['nofwd'] });
    const localPort = await freePort();
    const c = spawnClient('ssh', [...w.opts(nofwd, ['-N', '-L', `${localPort}:127.0.0.1:9`]), 'web1@127.0.0.1']);
    try {
      await waitFor(() => new Promise<boolean>((resolve) => {
        const s = net.connect(localPort, '127.0.0.1');
        s.on('connect', () => { s.destroy(); resolve(true); });
        s.on('error', () => resolve(false));
      }), 15_000, 'local forward listener');
      await waitFor(() => c.stderr().includes('open failed'), 10_000, 'ssh to report the refused channel');
    } finally {
      c.child.kill();
      await c.exited;
    }
    expect(c.stderr()).toMatch(/open failed: administratively prohibited: vigil: forwarding to 127\.0\.0\.1:9 refused by roles\.port_forwarding: no role allows port forwarding \(roles nofwd/);
    const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.outcome === 'failure' && e.actor.cert_serial === nofwd.creds.serial);
    expect(ev.details).toMatchObject({ destination: '127.0.0.1:9', rule: 'roles.port_forwarding' });
    expect(String(ev.details.reason)).toContain('roles nofwd');
  });
});

describe('ssh transparency: jump mode host identity', () => {
  let w: SshWorld;
  let dir: string;
  beforeAll(async () => {
    // Two targets on the same backend: only vigil's answer tells them apart.
    w = await startWorld({ targets: (sshd) => [{ name: 'web2', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub }] });
    dir = tempDir('vigil-ssh-jump-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const sshConfig = (alice: IssuedFiles, known: string) => {
    const config = path.join(dir, `ssh_config-${path.basename(known)}`);
    fs.writeFileSync(config, [
      'Host vigil', '  HostName 127.0.0.1', `  Port ${w.port}`, '  User alice',
      'Host web1 web2', '  ProxyJump vigil', `  User ${w.sshd.user}`,
      'Host *', `  IdentityFile ${alice.sshKey}`, `  CertificateFile ${alice.sshCert}`, '  IdentitiesOnly yes', '  BatchMode yes',
      `  UserKnownHostsFile ${known}`, '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking yes',
    ].join('\n') + '\n');
    return config;
  };

  it('each target presents its own host key: strict known_hosts works per host and two targets never share a key', async () => {
    const alice = await w.issue();
    const lines = vigilKnownHosts(w.gw.gw.services.identity, w.gw.gw.services.targets.all(), '127.0.0.1', w.port);
    const keyOf = (name: string) => lines.find((l) => l.startsWith(`${name} `))!.split(' ').slice(1).join(' ');
    expect(new Set([w.gatewayHostKey, keyOf('web1'), keyOf('web2')]).size).toBe(3);
    // Stable: asking again gives the same key (clients pin it).
    expect(vigilKnownHosts(w.gw.gw.services.identity, w.gw.gw.services.targets.all(), '127.0.0.1', w.port)).toEqual(lines);

    const known = path.join(dir, 'known_hosts');
    fs.writeFileSync(known, lines.join('\n') + '\n');
    const config = sshConfig(alice, known);
    for (const t of ['web1', 'web2']) {
      const r = await w.run('ssh', ['-F', config, t, `echo on-${t}`]);
      expect([r.code, r.stdout, r.stderr]).toEqual([0, `on-${t}\n`, '']);
    }

    // web2 pinned to web1's key (what a shared key would pass): strict checking refuses web2, web1 still works.
    const swapped = path.join(dir, 'known_hosts_swapped');
    fs.writeFileSync(swapped, [`[127.0.0.1]:${w.port} ${w.gatewayHostKey}`, `web1 ${keyOf('web1')}`, `web2 ${keyOf('web1')}`].join('\n') + '\n');
    const config2 = sshConfig(alice, swapped);
    const bad = await w.run('ssh', ['-F', config2, 'web2', 'echo should-not-run']);
    expect(bad.code).toBe(255);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
    const good = await w.run('ssh', ['-F', config2, 'web1', 'echo fine']);
    expect(good.stdout).toBe('fine\n');
  });
});

describe('ssh transparency: rsync', () => {
  let w: SshWorld;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    dir = tempDir('vigil-ssh-rsync-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('rsync over ssh through vigil copies a tree both ways, and the exec is on record', async () => {
    const alice = await w.issue();
    const src = path.join(dir, 'tree');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'alpha\n');
    fs.writeFileSync(path.join(src, 'sub', 'b.bin'), Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7) & 0xff)));
    const remote = path.join(w.sshd.dir, 'rsynced');
    const rsh = ['ssh', ...w.opts(alice)].map((a) => `'${a}'`).join(' ');
    const run = (args: string[]) => promisify(execFile)('rsync', ['-a', '-e', rsh, ...args], { timeout: 60_000 });
    await run([`${src}/`, `web1@127.0.0.1:${remote}/`]);
    expect(fs.readFileSync(path.join(remote, 'a.txt'), 'utf8')).toBe('alpha\n');
    expect(fs.readFileSync(path.join(remote, 'sub', 'b.bin')).equals(fs.readFileSync(path.join(src, 'sub', 'b.bin')))).toBe(true);
    const back = path.join(dir, 'back');
    await run([`web1@127.0.0.1:${remote}/`, `${back}/`]);
    expect(fs.readFileSync(path.join(back, 'sub', 'b.bin')).equals(fs.readFileSync(path.join(src, 'sub', 'b.bin')))).toBe(true);
    const execs = await waitFor(() => {
      const list = w.eventsOf('ssh.exec', (e) => e.actor.cert_serial === alice.creds.serial);
      return list.length === 2 ? list : undefined;
    }, 10_000, 'two ssh.exec events');
    for (const e of execs) {
      expect(String(e.details.command)).toMatch(/^rsync --server /);
      expect(e.details.exit_status).toBe(0);
    }
  });
});

/** paramiko (Debian python3-paramiko): exec with exit status and an sftp upload, certificate auth, strict host key. */
const PARAMIKO = `
import sys, paramiko
port, key, cert, known, remote = sys.argv[1:6]
pkey = paramiko.Ed25519Key.from_private_key_file(key)
pkey.load_certificate(cert)
c = paramiko.SSHClient()
c.load_host_keys(known)
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.connect('127.0.0.1', port=int(port), username='web1', pkey=pkey, allow_agent=False, look_for_keys=False)
_, out, _ = c.exec_command('echo via-paramiko; exit 3')
print(out.read().decode().strip(), out.channel.recv_exit_status())
s = c.open_sftp()
with s.open(remote, 'w') as f:
    f.write('written by paramiko\\n')
print(s.stat(remote).st_size)
c.close()
`;

describe('ssh transparency: paramiko', () => {
  let w: SshWorld;
  beforeAll(async () => {
    w = await startWorld();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('paramiko runs a command (exit status) and writes over sftp through vigil, host key checked strictly', async () => {
    const alice = await w.issue();
    const remote = path.join(w.sshd.dir, 'paramiko.txt');
    const known = path.join(w.gw.dataDir, '..', 'known_hosts');
    const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', PARAMIKO, String(w.port), alice.sshKey, alice.sshCert, known, remote], { timeout: 60_000 });
    expect(stdout).toBe('via-paramiko 3\n20\n');
    expect(fs.readFileSync(remote, 'utf8')).toBe('written by paramiko\n');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.actor.cert_serial === alice.creds.serial);
    expect(exec.details).toMatchObject({ command: 'echo via-paramiko; exit 3', exit_status: 3 });
    await w.gw.waitForEvent((e) => e.type === 'ssh.sftp' && e.actor.cert_serial === alice.creds.serial && e.details.path === remote);
  });
});

describe('ssh transparency: PuTTY plink', () => {
  let w: SshWorld;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld();
    dir = tempDir('vigil-ssh-plink-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('plink (putty-tools) runs a command through vigil with the certificate in a .ppk and the host key pinned', async () => {
    const alice = await w.issue();
    const ppk = path.join(dir, 'alice.ppk');
    execFileSync('puttygen', [alice.sshKey, '-O', 'private', '--certificate', alice.sshCert, '-o', ppk]);
    fs.writeFileSync(path.join(dir, 'gw.pub'), w.gatewayHostKey + '\n');
    const fp = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', path.join(dir, 'gw.pub')], { encoding: 'utf8' }).split(' ')[1]!;
    const r = await promisify(execFile)('plink', ['-batch', '-ssh', '-P', String(w.port), '-i', ppk, '-hostkey', fp, 'web1@127.0.0.1', 'echo via-plink'], {
      timeout: 60_000,
      env: { ...process.env, HOME: dir },
    });
    expect(r.stdout).toBe('via-plink\n');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.actor.cert_serial === alice.creds.serial);
    expect(exec.details).toMatchObject({ command: 'echo via-plink', exit_status: 0 });
  });
});
