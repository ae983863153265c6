import fs from 'node:fs';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/** The ssh2 client library logging in to the gateway as a jump host (`ssh -J alice@gateway`): username without a target. */
function jumpClient(w: SshWorld, creds: IssuedFiles): Promise<ssh2.Client> {
  const key = ssh2.utils.parseKey(fs.readFileSync(creds.sshKey)) as ssh2.ParsedKey;
  const [certType, certB64] = fs.readFileSync(creds.sshCert, 'utf8').trim().split(/\s+/) as [string, string];
  const cert = Object.create(key) as ssh2.ParsedKey;
  Object.defineProperty(cert, 'type', { value: certType });
  cert.getPublicSSH = () => Buffer.from(certB64, 'base64');
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client();
    c.once('ready', () => resolve(c));
    c.once('error', reject);
    c.connect({
      host: '127.0.0.1',
      port: w.port,
      username: 'alice',
      hostVerifier: () => true,
      authHandler: (_methods, _partial, next) => next({ type: 'publickey', username: 'alice', key: cert } as never),
    });
  });
}

/**
 * ProxyJump: each direct-tcpip on a jump-host connection makes vigil run an inner SSH server (key
 * exchange, an unauthenticated connection with its own timer). ssh.max_forwards bounds them like -L
 * channels, so one authenticated connection cannot make the gateway hold an unbounded number.
 */
describe('ssh -J: channels per jump-host connection', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld({ config: { ssh: { listen: '127.0.0.1:0', max_forwards: 2 } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('jump channels beyond ssh.max_forwards are refused with the reason, on record', async () => {
    const c = await jumpClient(w, alice);
    const open: ssh2.ClientChannel[] = [];
    try {
      const results: Array<string> = [];
      for (let i = 0; i < 4; i++) {
        const r = await new Promise<string>((resolve) =>
          c.forwardOut('127.0.0.1', 40000 + i, 'web1', 22, (err, ch) => {
            if (err) return resolve(`refused: ${err.message}`);
            open.push(ch);
            // The inner server speaks first: its identification line.
            ch.once('data', (d: Buffer) => resolve(d.toString().split('\r\n')[0]!));
          }),
        );
        results.push(r);
      }
      expect(results.slice(0, 2)).toEqual(['SSH-2.0-vigil', 'SSH-2.0-vigil']);
      expect(results[2]).toMatch(/refused: .*at most 2 forwarded connections/);
      expect(results[3]).toMatch(/refused/);
      const refused = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'direct-tcpip');
      expect(refused.outcome).toBe('failure');
      // A freed slot is usable again.
      open.pop()!.close();
      const again = await new Promise<string>((resolve) => {
        const tryOnce = () =>
          c.forwardOut('127.0.0.1', 40010, 'web1', 22, (err, ch) => {
            if (err) return void setTimeout(tryOnce, 100);
            open.push(ch);
            ch.once('data', (d: Buffer) => resolve(d.toString().split('\r\n')[0]!));
          });
        tryOnce();
      });
      expect(again).toBe('SSH-2.0-vigil');
    } finally {
      for (const ch of open) ch.close();
      c.end();
    }
  }, 60_000);
});
