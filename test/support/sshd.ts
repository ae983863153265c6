import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tempDir, freePort } from './tmp.ts';

/**
 * A real OpenSSH sshd for tests and benches: its own temp dir, a fresh ed25519 host key, a fresh client
 * key in its own AuthorizedKeysFile, listening on a random loopback port in the foreground (`-D -e`).
 * Nothing of the machine's /etc/ssh is used. As root it lets root log in (key only); as another user it
 * can only log in as that user (sshd without privileges).
 */
export interface StartSshdOptions {
  /** Extra public key lines (OpenSSH format) to authorize besides the generated client key. */
  authorizedKeys?: string[];
  /** Extra sshd_config lines, appended after the defaults (sshd takes the FIRST value of a keyword, so
   * a keyword already set below cannot be overridden here; use `overrides` for those). */
  extraConfig?: string[];
  /** Replace default keywords (e.g. `{ PasswordAuthentication: 'yes', AllowTcpForwarding: 'no' }`). */
  overrides?: Record<string, string>;
  /** sshd LogLevel (default VERBOSE, kept in `logs()`); DEBUG3 is handy when a test misbehaves. */
  logLevel?: string;
  /** Parent dir for the temp dir (default: a fresh `vigil-sshd-*` in the OS temp dir). */
  dir?: string;
  /** Echo sshd's log lines to stderr as they come (or set VIGIL_TEST_SSHD_LOG=1). */
  echoLog?: boolean;
}

export interface SshdHandle {
  host: '127.0.0.1';
  port: number;
  /** Login user (the user running the test; root on the CI machines). */
  user: string;
  /** Host public key line, `ssh-ed25519 AAAA… comment`. */
  hostKeyPub: string;
  /** Host private key path (0600), for tests that need the same key elsewhere. */
  hostKeyPath: string;
  /** A known_hosts file with `[127.0.0.1]:PORT` pinned to the host key. */
  knownHostsFile: string;
  /** Client private key path (0600); its `.pub` is authorized. */
  clientKey: string;
  clientKeyPub: string;
  /** The temp dir holding config, keys and authorized_keys. */
  dir: string;
  configFile: string;
  /** Client arguments (all `-o`, so they work for ssh, scp and sftp alike) that reach this sshd
   * non-interactively: port, key, pinned host key, batch mode. */
  sshArgs(extra?: string[]): string[];
  /** `user@127.0.0.1` for the end of an ssh command line. */
  destination: string;
  /** Append a line to the AuthorizedKeysFile (read by sshd at each login). */
  authorize(pubKeyLine: string): void;
  /** sshd log lines so far. */
  logs(): string[];
  /** Stop sshd and every session process it started; removes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

const SSHD = '/usr/sbin/sshd';
const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

function keygen(file: string, comment: string): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdio: 'ignore' });
  return fs.readFileSync(`${file}.pub`, 'utf8').trim();
}

export async function startSshd(opts: StartSshdOptions = {}): Promise<SshdHandle> {
  const dir = opts.dir ? fs.mkdtempSync(path.join(opts.dir, 'vigil-sshd-')) : tempDir('vigil-sshd-');
  fs.chmodSync(dir, 0o700);
  const user = os.userInfo().username;
  const isRoot = process.getuid?.() === 0;
  // Privilege-separation dir that root's sshd insists on; Debian creates it only when the service runs.
  if (isRoot) fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });

  const hostKeyPath = path.join(dir, 'ssh_host_ed25519_key');
  const hostKeyPub = keygen(hostKeyPath, 'vigil-test-sshd');
  const clientKey = path.join(dir, 'client_ed25519');
  const clientKeyPub = keygen(clientKey, 'vigil-test-client');
  const authorizedKeysFile = path.join(dir, 'authorized_keys');
  fs.writeFileSync(authorizedKeysFile, [clientKeyPub, ...(opts.authorizedKeys ?? [])].join('\n') + '\n', { mode: 0o600 });

  // The login user's own dotfiles stay out of the tests: root's ~/.bashrc on these machines runs
  // `pyenv init`, whose rehash lock (left behind when a test kills a shell) stalls every later shell
  // for up to 60 s. sshd sets HOME from SetEnv after its own defaults, so bash reads an empty home
  // instead; the working directory is still the user's real home.
  const shellHome = path.join(dir, 'home');
  fs.mkdirSync(shellHome, { mode: 0o700 });

  const logs: string[] = [];
  const echo = opts.echoLog || !!process.env.VIGIL_TEST_SSHD_LOG;
  const configFile = path.join(dir, 'sshd_config');
  const knownHostsFile = path.join(dir, 'known_hosts');

  // A port found free can be taken by someone else before sshd binds it: retry a few times.
  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    port = await freePort();
    const defaults: Record<string, string> = {
      ListenAddress: `127.0.0.1:${port}`,
      HostKey: hostKeyPath,
      PidFile: 'none',
      UsePAM: 'no',
      StrictModes: 'no',
      AuthorizedKeysFile: authorizedKeysFile,
      PubkeyAuthentication: 'yes',
      PasswordAuthentication: 'no',
      KbdInteractiveAuthentication: 'no',
      PermitRootLogin: 'prohibit-password',
      AllowTcpForwarding: 'yes',
      X11Forwarding: 'no',
      PrintMotd: 'no',
      PrintLastLog: 'no',
      UseDNS: 'no',
      MaxStartups: '100',
      MaxSessions: '100',
      LoginGraceTime: '30',
      AcceptEnv: 'LANG LC_* VIGIL_*',
      SetEnv: `HOME=${shellHome}`,
      Subsystem: `sftp ${SFTP_SERVER}`,
      LogLevel: opts.logLevel ?? 'VERBOSE',
      ...opts.overrides,
    };
    const lines = Object.entries(defaults).map(([k, v]) => `${k} ${v}`);
    // Match blocks must come last in sshd_config.
    fs.writeFileSync(configFile, [...lines, ...(opts.extraConfig ?? [])].join('\n') + '\n', { mode: 0o600 });

    const proc = spawn(SSHD, ['-D', '-e', '-f', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    const outcome = await new Promise<'ready' | 'in-use' | Error>((resolve) => {
      let buf = '';
      const timer = setTimeout(() => resolve(new Error(`sshd did not start within 10s:\n${logs.join('\n')}`)), 10_000);
      proc.stderr!.setEncoding('utf8');
      proc.stderr!.on('data', (chunk: string) => {
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          logs.push(line);
          if (echo) process.stderr.write(`[sshd:${port}] ${line}\n`);
          if (line.includes('Server listening on')) { clearTimeout(timer); resolve('ready'); }
          if (line.includes('Address already in use')) { clearTimeout(timer); resolve('in-use'); }
        }
      });
      proc.once('error', (e) => { clearTimeout(timer); resolve(e); });
      proc.once('exit', (code, sig) => {
        clearTimeout(timer);
        resolve(new Error(`sshd exited (${code ?? sig}) before listening:\n${logs.join('\n')}`));
      });
    });
    if (outcome === 'ready') child = proc;
    else {
      killTree(proc, 'SIGKILL');
      if (outcome !== 'in-use') {
        fs.rmSync(dir, { recursive: true, force: true });
        throw outcome;
      }
    }
  }
  if (!child) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error('sshd: no free loopback port after 5 attempts');
  }
  const proc = child;
  fs.writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${hostKeyPub}\n`);

  let stopped: Promise<void> | undefined;
  const handle: SshdHandle = {
    host: '127.0.0.1',
    port,
    user,
    hostKeyPub,
    hostKeyPath,
    knownHostsFile,
    clientKey,
    clientKeyPub,
    dir,
    configFile,
    destination: `${user}@127.0.0.1`,
    sshArgs: (extra = []) => [
      '-F', '/dev/null',
      '-o', `Port=${port}`,
      '-o', `IdentityFile=${clientKey}`,
      '-o', 'IdentitiesOnly=yes',
      '-o', 'BatchMode=yes',
      '-o', `UserKnownHostsFile=${knownHostsFile}`,
      '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes',
      '-o', 'LogLevel=ERROR',
      ...extra,
    ],
    authorize(line) {
      fs.appendFileSync(authorizedKeysFile, line.trim() + '\n');
    },
    logs: () => [...logs],
    stop() {
      stopped ??= (async () => {
        const pids = killTree(proc, 'SIGTERM');
        const deadline = Date.now() + 3_000;
        while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        for (const pid of pids.filter(alive)) {
          try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }
        fs.rmSync(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
  return handle;
}

/**
 * sshd puts every accepted connection in its own session (setsid), so the listener's process group does
 * not reach them: walk /proc for the listener's descendants and signal each one, before the listener
 * goes (after that they would be re-parented to init and lost).
 */
function killTree(proc: ChildProcess, signal: NodeJS.Signals): number[] {
  if (proc.pid === undefined) return [];
  const pids = [proc.pid, ...descendants(proc.pid)];
  for (const pid of pids.slice().reverse()) {
    try { process.kill(pid, signal); } catch { /* already gone */ }
  }
  return pids;
}

function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try { entries = fs.readdirSync('/proc'); } catch { return []; }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    let stat: string;
    try { stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8'); } catch { continue; }
    // Fields after the parenthesised command name (which may itself contain spaces): state ppid …
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(e));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    for (const c of children.get(stack.pop()!) ?? []) { out.push(c); stack.push(c); }
  }
  return out;
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
