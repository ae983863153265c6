import fs from 'node:fs';
import ssh2 from 'ssh2';
import type { SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/**
 * The ssh2 client library logged in through the gateway to `web1` with a vigil certificate: the private key
 * signs, the certificate is the public key offered. Tests use it for what stock OpenSSH cannot send (signal,
 * break and env floods, absurd pty sizes, forwards held open by hand). `strictVendor: false` for requests
 * ssh2 sends only to a server that announces itself as OpenSSH (vigil does not).
 */
export function certClient(w: SshWorld, creds: IssuedFiles, opts: { strictVendor?: boolean } = {}): Promise<ssh2.Client> {
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
      username: `${w.sshd.user}@web1`,
      hostVerifier: () => true,
      ...(opts.strictVendor === false ? { strictVendor: false } : {}),
      authHandler: (_methods, _partial, next) => next({ type: 'publickey', username: `${w.sshd.user}@web1`, key: cert } as never),
    });
  });
}
