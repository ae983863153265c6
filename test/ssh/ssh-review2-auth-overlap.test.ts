import fs from 'node:fs';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/**
 * A public-key attempt sent while another on the same connection is still being decided (admission and
 * the target connection take a while). ssh2's server holds such a request until the one before it is
 * answered, so vigil decides attempts one at a time and each refused one has its auth.failure; these tests
 * pin that down (Connection's `authBusy` refusal, which records nothing, must stay unreachable).
 */

/** The certificate as an ssh2 key: signs with the private key, presents the certificate. */
function certKey(creds: IssuedFiles): ssh2.ParsedKey {
  const key = ssh2.utils.parseKey(fs.readFileSync(creds.sshKey)) as ssh2.ParsedKey;
  const [certType, certB64] = fs.readFileSync(creds.sshCert, 'utf8').trim().split(/\s+/) as [string, string];
  const cert = Object.create(key) as ssh2.ParsedKey;
  Object.defineProperty(cert, 'type', { value: certType });
  cert.getPublicSSH = () => Buffer.from(certB64, 'base64');
  return cert;
}

const plainKey = () => ssh2.utils.parseKey(ssh2.utils.generateKeyPairSync('ed25519').private) as ssh2.ParsedKey;

type Sign = (data: Buffer, cb: (sig: Buffer) => void) => void;
type Protocol = { authPK(username: string, key: ssh2.ParsedKey, ...rest: Array<string | undefined | Sign>): void };

/**
 * Authenticate with `first` (ssh2's client: a query, then the signed request) and, right behind its query or
 * its signed request (`after`), before any answer, a signed request with `second`: the overlap a client
 * driving the protocol itself can make. Resolves with how the connection went and the disconnect text.
 */
function overlapping(w: SshWorld, ip: string, username: string, first: ssh2.ParsedKey, second: ssh2.ParsedKey, after: 'query' | 'signed'): Promise<{ outcome: 'ready' | 'closed'; disconnect: string }> {
  return new Promise((resolve) => {
    let disconnect = '';
    let tried = 0;
    const c = new ssh2.Client();
    c.on('error', () => {});
    c.on('ready', () => {
      resolve({ outcome: 'ready', disconnect });
      c.end();
    });
    c.on('close', () => resolve({ outcome: 'closed', disconnect }));
    c.on('connect', () => {
      const proto = (c as unknown as { _protocol: Protocol })._protocol;
      const authPK = proto.authPK.bind(proto);
      let overlapped = false;
      proto.authPK = (user, key, ...rest) => {
        authPK(user, key, ...rest);
        // A signed request's last argument signs; the query has none.
        if (overlapped || (typeof rest[rest.length - 1] === 'function') !== (after === 'signed')) return;
        overlapped = true;
        authPK(user, second, ((data, cb) => cb(second.sign(data) as Buffer)) as Sign);
      };
    });
    c.connect({
      host: '127.0.0.1',
      port: w.port,
      localAddress: ip,
      username,
      hostVerifier: () => true,
      debug: (m) => {
        const d = /Received DISCONNECT \(\d+, "(.*)"\)/.exec(m);
        if (d?.[1]) disconnect ||= d[1];
      },
      // One try: a refused key is not offered again (false: no more methods, not in ssh2's types).
      authHandler: (_methods, _partial, next) => next((tried++ === 0 ? { type: 'publickey', username, key: first } : false) as never),
    });
  });
}

describe('ssh: a public-key attempt made while another is being decided', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  const fromIp = (ip: string, type: AuditEvent['type']) => w.gw.events.filter((e) => e.source.ip === ip && e.type === type);

  it('behind a plain key being refused: decided in its turn, each refused attempt has its auth.failure', async () => {
    const ip = '127.0.7.1';
    // A plain key is refused at its query already (not a certificate): the second comes right behind that.
    const r = await overlapping(w, ip, `${w.sshd.user}@web1`, plainKey(), plainKey(), 'query');
    expect(r.outcome).toBe('closed');
    expect(r.disconnect).not.toMatch(/too many authentication attempts/);
    await w.gw.waitForEvent((e) => e.source.ip === ip && e.type === 'auth.failure' && fromIp(ip, 'auth.failure').length >= 2, 15_000);
    expect(fromIp(ip, 'auth.failure').map((e) => e.details.reason)).toEqual(['plain_key', 'plain_key']);
  }, 30_000);

  it('behind a certificate being admitted: the connection authenticates, never cut as too many attempts', async () => {
    const ip = '127.0.7.2';
    // Right behind the certificate's signed request: vigil is admitting it (auth.success, session.start, the
    // connection to the target) when the second arrives.
    const r = await overlapping(w, ip, `${w.sshd.user}@web1`, certKey(alice), plainKey(), 'signed');
    expect(r).toEqual({ outcome: 'ready', disconnect: '' });
    await w.gw.waitForEvent((e) => e.source.ip === ip && e.type === 'session.end', 15_000);
    // Sent before the client heard of its success and never decided (RFC 4252 5.1: ignored after success).
    expect(fromIp(ip, 'auth.failure')).toEqual([]);
    expect(fromIp(ip, 'auth.success')).toHaveLength(1);
  }, 30_000);
});
