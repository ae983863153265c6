import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startGatewayProcess } from '../support/gateway-process.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/** Connect through a local forward and get "ping" echoed back: bytes went to the destination and back. */
async function pingThrough(port: number): Promise<net.Socket> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    const answer = await new Promise<string | undefined>((r) => {
      s.once('connect', () => s.write('ping'));
      s.once('data', (d) => r(d.toString()));
      s.once('close', () => r(undefined));
    });
    if (answer === 'ping') return s;
    s.destroy();
    // ssh -L listens a moment after it starts; until then connections are refused.
    if (Date.now() > deadline) throw new Error(`no echo through the forward on port ${port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function echoServer(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((s) => s.pipe(s));
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, port: (server.address() as net.AddressInfo).port })));
}

/**
 * Port forwards are on record before bytes flow (principle 1): in strict mode the forward's opening is
 * durable before the target is asked to connect, so a kill -9 of the gateway mid-forward leaves it in the
 * log; and nothing is forwarded while the audit log cannot record it.
 */
describe('ssh -L: the forward is recorded before bytes flow', () => {
  let dir: string;
  let sshd: SshdHandle;
  let echo: { server: net.Server; port: number };
  beforeAll(async () => {
    dir = tempDir('vigil-fwd-kill-');
    sshd = await startSshd();
    echo = await echoServer();
  }, 30_000);
  afterAll(async () => {
    await sshd?.stop();
    echo?.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('strict: kill -9 of the gateway while bytes flow through -L leaves the forward start record', async () => {
    const port = await freePort();
    const config = {
      ssh: { listen: `127.0.0.1:${port}` },
      postgres: { enabled: false },
      mysql: { enabled: false },
      gateway: { connect_timeout: '3s', auth_timeout: '5s' },
      // A long background window: only a record made durable before the forward opened survives the kill.
      audit: { durability: 'strict', background_commit_window: '5s' },
      roles: [{ name: 'dev', targets: ['*'], logins: ['*'], port_forwarding: true }],
      targets: [{ name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub, port_forwarding: true }],
    };
    let gw = await startGatewayProcess(config, dir, { issue: { user: 'alice', roles: ['dev'], extensions: ['permit-pty', 'permit-port-forwarding'] } });
    const creds = gw.issued!;
    const knownHosts = path.join(dir, 'known_hosts');
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${gw.sshHostKey}\n`);
    const localPort = await freePort();
    const fwd = spawnClient('ssh', [
      '-F', '/dev/null', '-o', `Port=${port}`, '-o', `IdentityFile=${creds.sshKey}`, '-o', `CertificateFile=${creds.sshCert}`,
      '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
      '-o', 'StrictHostKeyChecking=yes', '-o', 'ExitOnForwardFailure=yes',
      '-N', '-L', `${localPort}:127.0.0.1:${echo.port}`, `${sshd.user}@web1@127.0.0.1`,
    ]);
    try {
      const s = await pingThrough(localPort);
      s.write('more bytes');
      await gw.kill('SIGKILL');
      s.destroy();
    } finally {
      fwd.child.kill('SIGKILL');
      await fwd.exited;
    }
    // Restart once so the torn tail is recovered, then close the log cleanly.
    gw = await startGatewayProcess(config, dir);
    await gw.stop();
    const { records } = await searchAuditLog(path.join(dir, 'data', 'audit'), { type: 'ssh.' });
    const forwards = records.filter((r) => r.event.type === 'ssh.forward').map((r) => r.event);
    expect(forwards.find((e) => e.details.state === 'open')).toMatchObject({ outcome: 'success', actor: { user: 'alice' }, details: { destination: `127.0.0.1:${echo.port}` } });
  }, 120_000);
});

describe('ssh -L with the audit log failing', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let echo: { server: net.Server; port: number };
  beforeAll(async () => {
    echo = await echoServer();
    w = await startWorld({ config: { audit: { durability: 'strict' } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    echo?.server.close();
  });

  it('a forward whose start record cannot be made durable is refused and the session ends audit_unavailable; a working one closes with its byte counts before session.end', async () => {
    const localPort = await freePort();
    const fwd = spawnClient('ssh', [...w.opts(alice, ['-N', '-L', `${localPort}:127.0.0.1:${echo.port}`]), 'web1@127.0.0.1']);
    const events = w.gw.gw.services.events;
    const real = events.beforeForward.bind(events);
    try {
      const s = await pingThrough(localPort);
      const open = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.details.state === 'open');
      s.destroy();
      const closed = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.details.state === 'closed' && e.details.forward === open.details.forward);
      expect(closed.details).toMatchObject({ bytes_from_client: 4, bytes_to_client: 4 });
      // The next forward's record is refused: the target is never asked, the session ends.
      events.beforeForward = () => Promise.reject(new Error('ENOSPC: no space left on device'));
      const refused = net.connect(localPort, '127.0.0.1');
      refused.on('error', () => {});
      refused.write('ping');
      const answer = await new Promise<string | undefined>((r) => {
        refused.once('data', (d) => r(d.toString()));
        refused.once('close', () => r(undefined));
      });
      expect(answer).toBeUndefined();
      const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === open.session_id);
      expect(end.details.reason).toBe('audit_unavailable');
      // The working forward's close came first.
      const ids = w.gw.events.filter((e) => e.session_id === open.session_id).map((e) => e.id);
      expect(ids.indexOf(closed.id)).toBeLessThan(ids.indexOf(end.id));
      await waitFor(() => fwd.child.exitCode !== null || fwd.child.signalCode !== null, 15_000, 'ssh -N to exit');
    } finally {
      events.beforeForward = real;
      fwd.child.kill('SIGKILL');
    }
  }, 60_000);
});
