import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callerCredential } from '../../src/access/service.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { parseCertificateLine } from '../../src/identity/openssh-cert.ts';
import { apiEnv, type ApiEnv, type ClientCert } from './support.ts';

/**
 * A grant certificate (POST /v1/access/grants/:id/certificate) is obtained with the caller's client
 * certificate, so it may never be worth more than that one: it stays bound to the same source addresses,
 * ends no later, and a certificate limited to one command obtains none (a grant certificate gives a shell).
 */
let env: ApiEnv;
let approver: ClientCert;
beforeAll(async () => {
  env = await apiEnv();
  approver = await env.client('bob', ['sre-lead']);
});
afterAll(async () => {
  await env?.stop();
});

const last = (type: string): AuditEvent | undefined => env.of(type).at(-1);

/** A credential of `user` issued like `vigil cert issue` with these limits, as the API client presents it. */
async function restricted(user: string, limits: { sourceAddresses?: string[]; forceCommand?: string; ttlMs: number }): Promise<ClientCert & { notAfter: Date; sshCertificate: string }> {
  const c = await env.services.identity.issue({ user, roles: ['dev'], ...limits });
  return { user, serial: c.serial, cert: c.x509Certificate, key: c.x509PrivateKey, notAfter: c.notAfter, sshCertificate: c.sshCertificate };
}

/** An approved one-hour grant of prod-dba for `who`. */
async function grantFor(who: ClientCert): Promise<string> {
  const req = await env.call('POST', '/v1/access/requests', who, { role: 'prod-dba', reason: 'INC-31 deploy', ttl: '1h' });
  expect(req.status).toBe(201);
  const ok = await env.call('POST', `/v1/access/requests/${req.body.request.id}/approve`, approver, {});
  expect(ok.body.request.state).toBe('active');
  return req.body.request.id;
}

describe('grant certificates keep the limits of the certificate that asked for them', () => {
  it('a caller bound to source addresses, with a short lifetime, gets one bound the same way and ending no later', async () => {
    const caller = await restricted('carl', { sourceAddresses: ['127.0.0.1/32'], ttlMs: 5 * 60_000 });
    const id = await grantFor(caller);

    const r = await env.call('POST', `/v1/access/grants/${id}/certificate`, caller, { ttl: '1h' });
    expect(r.status).toBe(201);
    const c = r.body.certificate;
    // The grant lasts an hour and an hour was asked for: the caller's five minutes win.
    expect(Date.parse(c.not_after)).toBeLessThanOrEqual(caller.notAfter.getTime());
    expect(Date.parse(c.not_after)).toBeGreaterThan(Date.now());

    const ssh = parseCertificateLine(c.ssh_certificate);
    expect(ssh.criticalOptions.map((o) => o.name)).toEqual(['source-address']);
    expect(Number(ssh.validBefore) * 1000).toBeLessThanOrEqual(caller.notAfter.getTime());
    expect(new crypto.X509Certificate(c.x509_certificate).subjectAltName).toContain('URI:urn:vigil:source-address:127.0.0.1/32');

    // Both halves are refused elsewhere and accepted from the bound address.
    const der = new crypto.X509Certificate(c.x509_certificate).raw;
    expect(env.services.identity.verifyClientCertificate(der, '192.0.2.7')).toMatchObject({ ok: false, reason: 'source_address' });
    expect(env.services.identity.verifyClientCertificate(der, '127.0.0.1')).toMatchObject({ ok: true, principal: { sourceAddresses: ['127.0.0.1/32'], grantId: id } });

    expect(last('cert.issued')).toMatchObject({ actor: { user: 'carl' }, details: { serial: c.serial, grant_id: id, source_addresses: ['127.0.0.1/32'] } });
  });

  it('a caller limited to one command is refused, with a stable code and an access.refused event', async () => {
    const caller = await restricted('cinda', { sourceAddresses: ['127.0.0.1/32'], forceCommand: '/usr/bin/deploy', ttlMs: 5 * 60_000 });
    const id = await grantFor(caller);
    const issuedBefore = env.of('cert.issued').length;

    const r = await env.call('POST', `/v1/access/grants/${id}/certificate`, caller, { ttl: '1h' });
    expect(r).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_RESTRICTED_CREDENTIAL' } } });
    expect(r.body.error.message).toMatch(/limited to one command/);
    expect(last('access.refused')).toMatchObject({
      outcome: 'failure',
      actor: { user: 'cinda', cert_serial: caller.serial },
      details: { action: 'issue_certificate', code: 'VIGIL_RESTRICTED_CREDENTIAL', request_id: id },
    });
    expect(env.of('cert.issued')).toHaveLength(issuedBefore);
  });

  it('the X.509 half of a credential issued with a forced command says so; an unrestricted one does not', async () => {
    const forced = await restricted('dora', { forceCommand: '/usr/bin/deploy', ttlMs: 60_000 });
    const x509 = new crypto.X509Certificate(forced.cert);
    expect(x509.subjectAltName).toContain('URI:urn:vigil:restricted');
    const v = env.services.identity.verifyClientCertificate(x509.raw, '127.0.0.1');
    expect(v).toMatchObject({ ok: true, principal: { user: 'dora', commandRestricted: true } });

    const plain = await restricted('dora', { ttlMs: 60_000 });
    const pv = env.services.identity.verifyClientCertificate(new crypto.X509Certificate(plain.cert).raw, '127.0.0.1');
    expect(pv.ok && pv.principal.commandRestricted).toBeFalsy();
    expect(new crypto.X509Certificate(plain.cert).subjectAltName).toBeUndefined();
  });

  it('an unrestricted caller (no marker, no addresses, as certificates issued before) is served as before', async () => {
    const caller = await env.client('erin', ['dev']);
    const id = await grantFor(caller);
    const r = await env.call('POST', `/v1/access/grants/${id}/certificate`, caller, { ttl: '30m' });
    expect(r.status).toBe(201);
    expect(parseCertificateLine(r.body.certificate.ssh_certificate).criticalOptions).toEqual([]);
    expect(new crypto.X509Certificate(r.body.certificate.x509_certificate).subjectAltName).toBe(`URI:urn:vigil:grant:${id}`);
  });

  it('the limits of SSH certificates and tokens are read the same way', async () => {
    const c = await env.services.identity.issue({ user: 'fay', roles: [], sourceAddresses: ['127.0.0.0/8'], forceCommand: '/bin/true', ttlMs: 60_000 });
    const blob = Buffer.from(c.sshCertificate.split(' ')[1], 'base64');
    const ssh = env.services.identity.verifySshAuth({ keyAlgo: c.sshCertificate.split(' ')[0], keyBlob: blob, sourceIp: '127.0.0.1' });
    expect(ssh.ok && callerCredential(ssh.principal)).toEqual({ notAfter: c.notAfter, sourceAddresses: ['127.0.0.0/8'], commandRestricted: true });

    const t = await env.services.identity.issueToken({ user: 'fay', roles: [], sourceAddresses: ['127.0.0.0/8'], ttlMs: 60_000 });
    const token = env.services.identity.verifyToken(t.token, '127.0.0.1');
    expect(token.ok && callerCredential(token.principal)).toEqual({ notAfter: t.notAfter, sourceAddresses: ['127.0.0.0/8'] });
  });
});
