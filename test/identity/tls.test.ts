import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import { describe, expect, it } from 'vitest';
import type { VerifyResult } from '../../src/identity/types.ts';
import { setupIdentity } from './helpers.ts';

/**
 * The material from `identity.tls()` and `identity.issue()` works in a real TLS handshake: the client
 * verifies the gateway with ca.crt and the host name, the gateway gets the client certificate and
 * `verifyClientCertificate` turns it into the user.
 */
describe('TLS material', () => {
  it('mutual TLS with ca.crt, the server certificate and an issued client certificate', async () => {
    const t = await setupIdentity();
    const creds = await t.identity.issue({ user: 'alice', roles: ['dba'] });
    const material = t.identity.tls();
    const results: VerifyResult[] = [];
    const server = tls.createServer({ cert: material.cert, key: material.key, ca: material.ca, requestCert: true, rejectUnauthorized: false }, (s) => {
      results.push(t.identity.verifyClientCertificate(s.getPeerCertificate().raw, s.remoteAddress ?? ''));
      s.end('hi');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const connect = (opts: tls.ConnectionOptions) =>
      new Promise<string>((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port, ca: creds.caCertificate, ...opts }, () => undefined);
        let data = '';
        c.on('data', (d) => (data += d));
        c.on('end', () => resolve(data));
        c.on('error', reject);
      });
    try {
      expect(await connect({ servername: 'localhost', cert: creds.x509Certificate, key: creds.x509PrivateKey })).toBe('hi');
      expect(results[0].ok && results[0].principal.user).toBe('alice');
      // without a client certificate the handshake completes, and verification says what is missing
      await connect({ servername: 'localhost' });
      expect(results[1].ok || results[1].reason).toBe('no_certificate');
      // a name that is not in the SANs is refused by the client
      await expect(connect({ servername: 'gw.example.com', checkServerIdentity: (h, c) => tls.checkServerIdentity(h, c) })).rejects.toThrow(/not in the cert's altnames|does not match/);
    } finally {
      server.close();
    }
    expect(new crypto.X509Certificate(material.cert).checkHost('localhost')).toBe('localhost');
    expect(new crypto.X509Certificate(material.cert).checkIP('127.0.0.1')).toBe('127.0.0.1');
  });
});
