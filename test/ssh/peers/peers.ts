import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startWorld, spawnClient, type SshWorld } from '../harness.ts';
import { vigilKnownHosts } from '../../../proxies/ssh/known-hosts.ts';
import { tempDir, waitFor } from '../../support/tmp.ts';
import { exec, compare, failed, type ExecResult, type PeerRow, type Results } from '../../../bench/peers/compare.ts';

/**
 * The SSH client comparison (issue 17): each stock client runs the same workload direct to a real sshd and
 * through vigil; every result it prints must be the same. Used by test/ssh/peers.test.ts (assertions) and
 * bench/peers/ssh.ts (side-by-side table). Each side is an ssh_config file with three hosts: `target` (a
 * plain login), `jumped` (the same login through `ProxyJump`: direct via the sshd itself, through vigil
 * with vigil as the jump host) and the jump host; the non-OpenSSH clients get the equivalent options.
 */
const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = '/usr/bin/python3';

export interface SshSide {
  name: 'direct' | 'vigil';
  /** ssh_config with hosts `target` and `jumped`. */
  config: string;
  port: number;
  user: string;
  key: string;
  cert?: string;
  knownHosts: string;
  /** SHA256 fingerprint of the host key the side presents (for plink/pscp `-hostkey`). */
  hostKeyFp: string;
  /** A .ppk of the key (and certificate) for PuTTY. */
  ppk: string;
  /** A directory on the target for this side's files (same path on the target's file system). */
  remote: string;
  /** A local scratch directory. */
  local: string;
}

const sha = (b: Buffer | string) => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);
const blob = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));
/** Results never carry the side's own paths or ports. */
const clean = (side: SshSide, s: string) => s.split(side.remote).join('$REMOTE').split(side.local).join('$LOCAL');
const outcome = (side: SshSide, r: ExecResult) => `${r.code} ${JSON.stringify(clean(side, r.stdout))} ${JSON.stringify(clean(side, r.stderr))}`;
const ssh = (side: SshSide, args: string[], o: { input?: string; env?: NodeJS.ProcessEnv } = {}) => exec('ssh', ['-F', side.config, ...args], { timeoutMs: 60_000, ...o });

/** OpenSSH ssh: exit status, stderr apart from stdout, 1 MB of stdin, a pty, ssh -J, ControlMaster. */
async function openssh(side: SshSide): Promise<Results> {
  const out: Results = {};
  out.exec = outcome(side, await ssh(side, ['target', 'echo out; echo err >&2; exit 3']));
  const hashed = await exec('ssh', ['-F', side.config, 'target', 'sha256sum'], { input: blob, timeoutMs: 60_000 });
  out.stdin_300k = hashed.stdout.split(' ')[0] === crypto.createHash('sha256').update(blob).digest('hex') ? 'same bytes' : outcome(side, hashed);
  out.tty = outcome(side, await ssh(side, ['-tt', 'target', 'tty -s && echo has-tty'], { env: { ...process.env, TERM: 'xterm' } }));
  out.jump = outcome(side, await ssh(side, ['jumped', 'echo via-jump; hostname >/dev/null && echo ok']));
  const sock = path.join(side.local, 'cm.sock');
  const master = await ssh(side, ['-o', 'ControlMaster=yes', '-o', `ControlPath=${sock}`, '-o', 'ControlPersist=30', '-fN', 'target']);
  out.controlmaster_start = String(master.code);
  const viaMaster = [];
  for (const n of [1, 2, 3]) viaMaster.push(outcome(side, await ssh(side, ['-o', `ControlPath=${sock}`, '-o', 'ControlMaster=no', 'target', `echo mux-${n}`])));
  out.controlmaster_sessions = viaMaster.join(' ; ');
  out.controlmaster_check = String((await ssh(side, ['-o', `ControlPath=${sock}`, '-O', 'check', 'target'])).code);
  out.controlmaster_exit = String((await ssh(side, ['-o', `ControlPath=${sock}`, '-O', 'exit', 'target'])).code);
  return out;
}

/** scp (SFTP mode and legacy -O) and sftp in batch mode. */
async function scpSftp(side: SshSide): Promise<Results> {
  const out: Results = {};
  const src = path.join(side.local, 'blob.bin');
  fs.writeFileSync(src, blob);
  for (const mode of ['sftp', 'legacy']) {
    const flag = mode === 'legacy' ? ['-O'] : [];
    const up = await exec('scp', ['-F', side.config, ...flag, src, `target:${side.remote}/scp-${mode}.bin`]);
    const back = path.join(side.local, `back-${mode}.bin`);
    const down = await exec('scp', ['-F', side.config, ...flag, `target:${side.remote}/scp-${mode}.bin`, back]);
    out[`scp_${mode}`] = up.code || down.code ? `${outcome(side, up)} / ${outcome(side, down)}` : `round trip ${sha(fs.readFileSync(back))}`;
  }
  const batch = [`cd ${side.remote}`, 'mkdir d', 'put blob.bin d/one.bin', 'rename d/one.bin d/two.bin', 'ls -1 d', 'get d/two.bin got.bin', 'rm d/two.bin', 'rmdir d', 'ls -1'].join('\n');
  const r = await exec('sftp', ['-F', side.config, '-b', '-', 'target'], { input: batch, cwd: side.local });
  out.sftp_batch = outcome(side, r);
  out.sftp_get = fs.existsSync(path.join(side.local, 'got.bin')) ? sha(fs.readFileSync(path.join(side.local, 'got.bin'))) : 'missing';
  return out;
}

/** rsync over ssh both ways, and git clone / push over ssh. */
async function rsyncGit(side: SshSide): Promise<Results> {
  const out: Results = {};
  const rsh = `ssh -F ${side.config}`;
  const tree = path.join(side.local, 'tree');
  fs.mkdirSync(path.join(tree, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'a.txt'), 'alpha\n');
  fs.writeFileSync(path.join(tree, 'sub', 'b.bin'), blob);
  const upR = await exec('rsync', ['-a', '--stats', '-e', rsh, `${tree}/`, `target:${side.remote}/tree/`]);
  const downR = await exec('rsync', ['-a', '-e', rsh, `target:${side.remote}/tree/`, `${side.local}/tree-back/`]);
  out.rsync = upR.code || downR.code ? `${outcome(side, upR)} / ${outcome(side, downR)}` : `both ways ${sha(fs.readFileSync(path.join(side.local, 'tree-back', 'sub', 'b.bin')))} ${/Number of files: (.*)/.exec(upR.stdout)?.[1]}`;
  const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', HOME: side.local, GIT_SSH_COMMAND: rsh, GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z', GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z' };
  const git = (args: string[], cwd = side.local) => exec('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', '-c', 'init.defaultBranch=main', ...args], { env, cwd });
  await git(['init', '-q', '--bare', `${side.remote}/repo.git`]);
  const work = path.join(side.local, 'work');
  await git(['init', '-q', work]);
  fs.writeFileSync(path.join(work, 'README'), 'peers\n');
  await git(['add', 'README'], work);
  await git(['commit', '-q', '-m', 'first'], work);
  const push = await git(['push', '-q', `target:${side.remote}/repo.git`, 'main'], work);
  out.git_push = String(push.code) + (push.code ? ` ${clean(side, push.stderr)}` : '');
  const clone = await git(['-c', 'protocol.version=2', 'clone', '-q', `target:${side.remote}/repo.git`, 'clone']);
  out.git_clone = clone.code ? outcome(side, clone) : fs.readFileSync(path.join(side.local, 'clone', 'README'), 'utf8');
  out.git_head = (await git(['rev-parse', 'HEAD'], path.join(side.local, 'clone'))).stdout.trim();
  return out;
}

/** PuTTY plink (command, stdin) and pscp (upload, download). */
async function putty(side: SshSide): Promise<Results> {
  const out: Results = {};
  const common = ['-batch', '-P', String(side.port), '-i', side.ppk, '-hostkey', side.hostKeyFp];
  const env = { ...process.env, HOME: side.local };
  out.plink = outcome(side, await exec('plink', ['-ssh', ...common, `${side.user}@127.0.0.1`, 'echo via-plink; cat; exit 4'], { env, input: 'from stdin\n' }));
  const src = path.join(side.local, 'blob.bin');
  fs.writeFileSync(src, blob);
  for (const proto of ['-sftp', '-scp']) {
    const up = await exec('pscp', ['-q', proto, ...common, src, `${side.user}@127.0.0.1:${side.remote}/pscp${proto}.bin`], { env });
    const back = path.join(side.local, `pscp${proto}-back.bin`);
    const down = await exec('pscp', ['-q', proto, ...common, `${side.user}@127.0.0.1:${side.remote}/pscp${proto}.bin`, back], { env });
    out[`pscp${proto}`] = up.code || down.code ? `${outcome(side, up)} / ${outcome(side, down)}` : `round trip ${sha(fs.readFileSync(back))}`;
  }
  return out;
}

async function paramiko(side: SshSide): Promise<Results> {
  const r = await exec(PYTHON, [path.join(here, 'paramiko_workload.py'), String(side.port), side.user, side.key, side.cert ?? '-', side.knownHosts, side.remote], { timeoutMs: 60_000 });
  if (r.code !== 0) return { run: failed(r) };
  return Object.fromEntries(Object.entries(JSON.parse(r.stdout) as Record<string, unknown>).map(([k, v]) => [k, JSON.stringify(v)]));
}

/**
 * `ssh -tt` into the target, start tmux there with vim on a new file, type into vim and save (`:wq`), leave
 * tmux and the shell: the file vim wrote must hold the typed line, and the session must end with status 0.
 */
export async function tmuxVim(side: SshSide): Promise<Results> {
  const file = `${side.remote}/vim-${Date.now()}.txt`;
  const c = spawnClient('ssh', ['-F', side.config, '-tt', 'target']);
  let seen = 0;
  const until = (s: string) =>
    waitFor(() => {
      const i = c.stdout().indexOf(s, seen);
      if (i < 0) return false;
      seen = i + s.length;
      return true;
    }, 20_000, `${side.name}: ${s} in the session; so far: ${JSON.stringify(c.stdout().slice(-500))}`);
  const send = (s: string) => c.child.stdin!.write(s);
  const out: Results = {};
  try {
    send('export PS1="pe""ers$ "; stty -echo\r');
    await until('peers$ ');
    send(`tmux -L vigil-peers-${side.name} -f /dev/null new-session 'vim -u NONE -N -n ${file}'; echo tmux-exit-$?\r`);
    await until('[New]');
    send('ihello from vim inside tmux\x1b');
    send(':wq\r');
    await until('tmux-exit-0');
    send('exit\r');
    const code = await Promise.race([c.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    out.session_exit = String(code);
    out.file_written_by_vim = fs.existsSync(file) ? JSON.stringify(fs.readFileSync(file, 'utf8')) : 'missing';
  } catch (e) {
    out.run = `failed: ${(e as Error).message.split('\n')[0]}`;
  } finally {
    c.child.kill();
  }
  return out;
}

/** ansible (ansible-core): ping, command, copy, with ssh options from the side's ssh_config. */
async function ansible(side: SshSide): Promise<Results> {
  const inv = path.join(side.local, 'inventory.ini');
  fs.writeFileSync(inv, `target ansible_ssh_common_args="-F ${side.config}" ansible_python_interpreter=${PYTHON}\n`);
  const env = { ...process.env, HOME: side.local, ANSIBLE_HOST_KEY_CHECKING: 'True', ANSIBLE_NOCOLOR: '1', ANSIBLE_LOCAL_TEMP: path.join(side.local, 'ansible-tmp'), ANSIBLE_REMOTE_TMP: `${side.remote}/.ansible-tmp`, ANSIBLE_SSH_CONTROL_PATH_DIR: path.join(side.local, 'cp') };
  const run = (mod: string, args: string) => exec('ansible', ['target', '-i', inv, '-o', '-m', mod, '-a', args], { env, timeoutMs: 120_000 });
  const out: Results = {};
  const strip = (r: ExecResult) => (r.code ? outcome(side, r) : clean(side, r.stdout).replace(/"(changed|checksum|dest|gid|group|md5sum|mode|owner|size|src|state|uid|delta|end|start)": [^,}]*,?\s*/g, '').trim());
  const ping = await run('ping', '');
  out.ping = ping.code ? outcome(side, ping) : /SUCCESS/.test(ping.stdout) ? 'SUCCESS pong' : ping.stdout;
  const cmd = await run('command', 'echo from-ansible');
  out.command = cmd.code ? outcome(side, cmd) : (/\| (\w+) \| rc=(\d+) \| \(stdout\) (.*)/.exec(cmd.stdout)?.slice(1).join(' ') ?? strip(cmd));
  const copy = await run('copy', `content="copied by ansible\n" dest=${side.remote}/ansible.txt`);
  out.copy = copy.code ? outcome(side, copy) : fs.readFileSync(`${side.remote}/ansible.txt`, 'utf8');
  return out;
}

export type SshClient = 'openssh' | 'scp/sftp' | 'rsync/git' | 'putty' | 'paramiko' | 'tmux+vim' | 'ansible';
export const ALL_SSH_CLIENTS: SshClient[] = ['openssh', 'scp/sftp', 'rsync/git', 'putty', 'paramiko', 'tmux+vim', 'ansible'];
const WORKLOADS: Record<SshClient, (s: SshSide) => Promise<Results>> = {
  openssh, 'scp/sftp': scpSftp, 'rsync/git': rsyncGit, putty, paramiko, 'tmux+vim': tmuxVim, ansible,
};

export async function runSshPeers(w: SshPeerWorld, clients: SshClient[] = ALL_SSH_CLIENTS): Promise<PeerRow[]> {
  const rows: PeerRow[] = [];
  for (const c of clients) rows.push(...compare(c, await WORKLOADS[c](w.direct), await WORKLOADS[c](w.vigil)));
  return rows;
}

export interface SshPeerWorld {
  w: SshWorld;
  direct: SshSide;
  vigil: SshSide;
  stop(): Promise<void>;
}

const fingerprint = (pubLine: string, dir: string) => {
  const f = path.join(dir, `fp-${sha(pubLine)}.pub`);
  fs.writeFileSync(f, pubLine + '\n');
  return execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', f], { encoding: 'utf8' }).split(' ')[1]!;
};

/** A real sshd behind vigil (target `web1`, GIT_PROTOCOL accepted by the sshd) and both sides' client files. */
export async function startSshPeerWorld(): Promise<SshPeerWorld> {
  const w = await startWorld({ sshd: { extraConfig: ['AcceptEnv GIT_PROTOCOL'] } });
  const base = tempDir('vigil-sshpeers-');
  const alice = await w.issue();
  const side = (name: 'direct' | 'vigil') => {
    const local = path.join(base, name);
    const remote = path.join(w.sshd.dir, `peers-${name}`);
    fs.mkdirSync(local, { recursive: true });
    fs.mkdirSync(remote, { recursive: true });
    return { local, remote };
  };
  const common = (key: string, cert: string | undefined, known: string) => [
    'Host *', `  IdentityFile ${key}`, ...(cert ? [`  CertificateFile ${cert}`] : []), '  IdentitiesOnly yes', '  BatchMode yes',
    `  UserKnownHostsFile ${known}`, '  GlobalKnownHostsFile /dev/null', '  StrictHostKeyChecking yes', '  ConnectTimeout 10', '  LogLevel ERROR',
  ];
  const ppk = (file: string, key: string, cert?: string) => {
    execFileSync('puttygen', [key, '-O', 'private', ...(cert ? ['--certificate', cert] : []), '-o', file]);
    return file;
  };

  const d = side('direct');
  const dConfig = path.join(d.local, 'ssh_config');
  fs.writeFileSync(dConfig, [
    'Host target jumped jumphost', '  HostName 127.0.0.1', `  Port ${w.sshd.port}`, `  User ${w.sshd.user}`,
    'Host jumped', '  ProxyJump jumphost',
    ...common(w.sshd.clientKey, undefined, w.sshd.knownHostsFile),
  ].join('\n') + '\n');
  const direct: SshSide = {
    name: 'direct', config: dConfig, port: w.sshd.port, user: w.sshd.user, key: w.sshd.clientKey, knownHosts: w.sshd.knownHostsFile,
    hostKeyFp: fingerprint(w.sshd.hostKeyPub, base), ppk: ppk(path.join(d.local, 'key.ppk'), w.sshd.clientKey), ...d,
  };

  const v = side('vigil');
  const vKnown = path.join(v.local, 'known_hosts');
  fs.writeFileSync(vKnown, [`[127.0.0.1]:${w.port} ${w.gatewayHostKey}`, ...vigilKnownHosts(w.gw.gw.services.identity, w.gw.gw.services.targets.all(), '127.0.0.1', w.port)].join('\n') + '\n');
  const vConfig = path.join(v.local, 'ssh_config');
  fs.writeFileSync(vConfig, [
    'Host target', '  HostName 127.0.0.1', `  Port ${w.port}`, '  User web1',
    'Host jumphost', '  HostName 127.0.0.1', `  Port ${w.port}`, '  User alice',
    'Host jumped', '  HostName web1', '  ProxyJump jumphost', `  User ${w.sshd.user}`,
    ...common(alice.sshKey, alice.sshCert, vKnown),
  ].join('\n') + '\n');
  const vigil: SshSide = {
    name: 'vigil', config: vConfig, port: w.port, user: 'web1', key: alice.sshKey, cert: alice.sshCert, knownHosts: vKnown,
    hostKeyFp: fingerprint(w.gatewayHostKey, base), ppk: ppk(path.join(v.local, 'key.ppk'), alice.sshKey, alice.sshCert), ...v,
  };
  return {
    w, direct, vigil,
    async stop() {
      await w.stop();
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}
