import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import ssh2 from 'ssh2';
import { vigilKnownHosts } from '../../proxies/ssh/known-hosts.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';

describe('ssh proxy: authentication, routing and forwarding', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dir: string;
  beforeAll(async () => {
    w = await startWorld({ config: { certs: { clock_skew: '1s' } } });
    alice = await w.issue();
    dir = tempDir('vigil-ssh-access-');
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const failureFor = (pred: (d: Record<string, unknown>) => boolean) => w.gw.waitForEvent((e) => e.type === 'auth.failure' && pred(e.details));

  it('an expired certificate is refused with reason expired', async () => {
    const old = await w.issue({ ttlMs: 1000 });
    await new Promise((r) => setTimeout(r, 2500));
    const r = await w.run('ssh', [...w.opts(old), 'web1@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied/);
    const ev = await failureFor((d) => d.reason === 'expired');
    expect(ev.actor.cert_serial).toBe(old.creds.serial);
  });

  it('a certificate from another CA is refused with reason wrong_ca', async () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'rogue_ca')]);
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'mallory')]);
    execFileSync('ssh-keygen', ['-q', '-s', path.join(dir, 'rogue_ca'), '-I', 'mallory', '-n', 'alice', '-V', '+1h', path.join(dir, 'mallory.pub')]);
    const rogue = { ...alice, sshKey: path.join(dir, 'mallory'), sshCert: path.join(dir, 'mallory-cert.pub') };
    const r = await w.run('ssh', [...w.opts(rogue), 'web1@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    await failureFor((d) => d.reason === 'wrong_ca');
  });

  it('a revoked certificate is refused with reason revoked', async () => {
    const bob = await w.issue({ user: 'bob' });
    const store = w.gw.gw.services.store;
    await store.revoke({ serial: bob.creds.serial, reason: 'test', by: 'admin', time: new Date().toISOString() });
    await store.refresh();
    const r = await w.run('ssh', [...w.opts(bob), 'web1@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    await failureFor((d) => d.reason === 'revoked');
  });

  it('a plain key (no certificate) is refused with reason plain_key and a short message', async () => {
    const plainDir = fs.mkdtempSync(path.join(dir, 'plain-'));
    const key = path.join(plainDir, 'id');
    fs.copyFileSync(alice.sshKey, key);
    fs.chmodSync(key, 0o600);
    const r = await w.run('ssh', [...w.opts({ ...alice, sshKey: key }, [], { certificate: false }), 'web1@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toContain('vigil:');
    await failureFor((d) => d.reason === 'plain_key');
  });

  it('an unknown target is refused with a clear message and an auth.failure event', async () => {
    const r = await w.run('ssh', [...w.opts(alice), 'root@nosuch@127.0.0.1', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/vigil: .*(No such target|access denied)/i);
    const ev = await w.gw.waitForEvent((e) => e.type === 'auth.failure' && e.target.name === 'nosuch');
    expect(ev.actor.user).toBe('alice');
  });

  it('passwords and keyboard-interactive are never accepted', async () => {
    const err = await new Promise<Error>((resolve) => {
      const c = new ssh2.Client();
      c.on('ready', () => {
        c.end();
        resolve(new Error('password was accepted'));
      });
      c.on('error', resolve);
      c.connect({ host: '127.0.0.1', port: w.port, username: 'web1', password: 'guess', tryKeyboard: true, hostVerifier: () => true });
    });
    expect(err.message).toMatch(/All configured authentication methods failed/);
  });

  it('jump-host mode: ssh -J records the inner session exactly like username routing', async () => {
    const known = path.join(dir, 'jump_known_hosts');
    const lines = vigilKnownHosts(w.gw.gw.services.identity, w.gw.gw.services.targets.all(), '127.0.0.1', w.port);
    expect(lines).toEqual([`[127.0.0.1]:${w.port} ${w.gatewayHostKey}`, expect.stringMatching(/^web1 ssh-ed25519 AAAA/)]);
    fs.writeFileSync(known, lines.join('\n') + '\n');
    const config = path.join(dir, 'ssh_config');
    fs.writeFileSync(
      config,
      [
        'Host vigil',
        '  HostName 127.0.0.1',
        `  Port ${w.port}`,
        '  User alice',
        'Host web1',
        '  ProxyJump vigil',
        `  User ${w.sshd.user}`,
        'Host *',
        `  IdentityFile ${alice.sshKey}`,
        `  CertificateFile ${alice.sshCert}`,
        '  IdentitiesOnly yes',
        '  BatchMode yes',
        `  UserKnownHostsFile ${known}`,
        '  GlobalKnownHostsFile /dev/null',
        '  StrictHostKeyChecking yes',
      ].join('\n') + '\n',
    );
    const r = await w.run('ssh', ['-F', config, 'web1', 'echo via-jump; exit 4']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('via-jump\n');
    expect(r.code).toBe(4);
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === 'echo via-jump; exit 4');
    expect(exec.details.exit_status).toBe(4);
    expect(exec.target).toMatchObject({ name: 'web1', login: w.sshd.user });
    const start = await w.gw.waitForEvent((e) => e.type === 'session.start' && e.session_id === exec.session_id);
    expect(start.details.mode).toBe('jump');
    // The outer connection is not a session by itself, and a bare "alice" login explains what to do.
    const bare = await w.run('ssh', ['-F', config, 'vigil', 'true']);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain('is not a target');
  });

  it('ssh -L works when certificate, role and target allow it, and is refused otherwise', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    const echoPort = await new Promise<number>((r) => echo.listen(0, '127.0.0.1', () => r((echo.address() as net.AddressInfo).port)));
    const roundTrip = async (localPort: number) =>
      new Promise<string>((resolve) => {
        const c = net.connect(localPort, '127.0.0.1');
        let got = '';
        c.on('data', (d) => {
          got += d.toString();
          if (got.length >= 5) c.end();
        });
        c.on('error', () => resolve(got));
        c.on('close', () => resolve(got));
        c.write('hello');
      });
    const listening = (port: number) => waitFor(() => new Promise((r) => net.connect(port, '127.0.0.1').on('connect', function (this: net.Socket) { this.destroy(); r(true); }).on('error', () => r(false))), 15_000, 'local forward listener');
    /** Run `ssh -N -L` with these credentials, push "hello" through it, return what came back. */
    const forwardAttempt = async (creds: IssuedFiles) => {
      const localPort = await freePort();
      const fwd = spawnClient('ssh', [...w.opts(creds, ['-N', '-L', `${localPort}:127.0.0.1:${echoPort}`]), 'web1@127.0.0.1']);
      try {
        await listening(localPort);
        return await roundTrip(localPort);
      } finally {
        fwd.child.kill();
        await fwd.exited;
      }
    };
    try {
      expect(await forwardAttempt(alice)).toBe('hello');
      // (The listener probe makes an empty forward first.)
      const ok = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.outcome === 'success' && e.details.state === 'closed' && e.details.destination === `127.0.0.1:${echoPort}` && e.details.bytes_to_client !== 0);
      expect(ok.details).toMatchObject({ bytes_from_client: 5, bytes_to_client: 5 });

      // Same user, no permit-port-forwarding in the certificate.
      const noFwd = await w.issue({ extensions: ['permit-pty'] });
      expect(await forwardAttempt(noFwd)).toBe('');
      const refused = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.outcome === 'failure' && e.actor.cert_serial === noFwd.creds.serial);
      expect(refused.details.reason).toMatch(/permit-port-forwarding/);

      // The certificate allows it but no role does.
      const nofwdRole = await w.issue({ roles: ['nofwd'] });
      expect(await forwardAttempt(nofwdRole)).toBe('');
      const refused2 = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.outcome === 'failure' && e.actor.cert_serial === nofwdRole.creds.serial);
      expect(refused2.details.reason).toMatch(/no role/);

      // Remote forwarding is refused outright.
      const rf = await w.run('ssh', [...w.opts(alice, ['-o', 'ExitOnForwardFailure=yes', '-R', `0:127.0.0.1:${echoPort}`]), 'web1@127.0.0.1', 'true']);
      expect(rf.code).toBe(255);
      await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'tcpip-forward');
    } finally {
      echo.close();
    }
  });

  it('agent and X11 forwarding are refused with ssh.request events; the command still runs', async () => {
    const agentSock = path.join(dir, 'agent.sock');
    const agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
    const saved = { SSH_AUTH_SOCK: process.env.SSH_AUTH_SOCK, DISPLAY: process.env.DISPLAY };
    try {
      await waitFor(() => fs.existsSync(agentSock), 5000, 'ssh-agent socket');
      process.env.SSH_AUTH_SOCK = agentSock;
      process.env.DISPLAY = ':55';
      const r = await w.run('ssh', [...w.opts(alice, ['-A', '-X']), 'web1@127.0.0.1', 'echo ran; echo "[$SSH_AUTH_SOCK][$DISPLAY]"']);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('ran\n[][]\n');
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
      agent.kill();
    }
    await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'auth-agent');
    await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'x11');
  });

  it('a certificate force-command replaces the requested command', async () => {
    const forced = await w.issue({ forceCommand: 'echo forced' });
    const r = await w.run('ssh', [...w.opts(forced), 'web1@127.0.0.1', 'echo asked']);
    expect(r.stdout).toBe('forced\n');
    const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.actor.cert_serial === forced.creds.serial);
    expect(ev.details.command).toBe('echo forced');
  });
});
