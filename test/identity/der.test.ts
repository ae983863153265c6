import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readSubject } from '../../src/identity/der.ts';
import { createCaCertificate, loadCa, createClientCertificate } from '../../src/identity/x509.ts';

describe('DER subject reader', () => {
  const ca = createCaCertificate('0a0b0c0d0e0f1011');
  const cert = createClientCertificate(loadCa(ca.certPem, ca.keyPem), {
    user: 'zoë, "the admin"',
    roles: ['oncall', 'dba'],
    serialHex: 'ffffffffffffffff',
    notBefore: new Date(Date.UTC(2026, 0, 1)),
    notAfter: new Date(Date.UTC(2051, 0, 1)), // GeneralizedTime from 2050 on
  });
  const raw = new crypto.X509Certificate(cert.certPem).raw;

  it('reads the subject attributes in order, unescaped, and node agrees on the rest of the certificate', () => {
    expect(readSubject(raw)).toEqual([
      ['2.5.4.3', 'zoë, "the admin"'],
      ['2.5.4.11', 'oncall'],
      ['2.5.4.11', 'dba'],
    ]);
    const x = new crypto.X509Certificate(raw);
    expect(x.serialNumber.toLowerCase()).toMatch(/^(00)?ffffffffffffffff$/);
    expect(Date.parse(x.validTo)).toBe(Date.UTC(2051, 0, 1));
    expect(readSubject(new crypto.X509Certificate(ca.certPem).raw)).toEqual([
      ['2.5.4.3', 'vigil CA'],
      ['2.5.4.10', 'vigil'],
    ]);
  });

  it('throws (never returns garbage) on a certificate cut at any byte', () => {
    for (let i = 0; i < raw.length; i++) {
      expect(() => readSubject(raw.subarray(0, i)), `cut at ${i}`).toThrow(/DER/);
    }
  });
});
