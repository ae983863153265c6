import crypto from 'node:crypto';
import { certificateHasSans, normalizeSerial, toPem } from '../../src/identity/x509.ts';
import { readSubject } from '../../src/identity/der.ts';
import { InvariantError, type FuzzTarget } from '../engine/target.ts';

/** node's X.509 parser refusing the bytes. */
const refusal = (err: unknown): boolean => err instanceof Error && (err.constructor === Error && err.message.startsWith('DER:') || /^ERR_(OSSL|CRYPTO|INVALID_ARG)/.test(String((err as { code?: string }).code)));

/**
 * Client and server certificates as PEM: node's parser, the SAN comparison, the subject reader on the
 * same DER, serial normalisation. Only parser refusals may be thrown.
 */
export const target: FuzzTarget = {
  name: 'x509',
  covers: ['src/identity/x509', 'src/identity/der'],
  maxLen: 4096,
  dictionary: [Buffer.from([0x30, 0x82]), Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]), Buffer.from([0x06, 0x03, 0x55, 0x1d, 0x11]), Buffer.from([0x82]), Buffer.from([0x87, 0x04])],
  run(data) {
    const pem = toPem(data, 'CERTIFICATE');
    try {
      certificateHasSans(pem, ['localhost', '127.0.0.1']);
      new crypto.X509Certificate(data).subject;
      readSubject(data);
    } catch (err) {
      if (err instanceof InvariantError || !refusal(err)) throw err;
    }
    try {
      normalizeSerial(data.toString('hex').slice(0, 40));
      normalizeSerial(data.toString('latin1').slice(0, 40));
    } catch (err) {
      if (!(err instanceof Error) || err.constructor !== Error) throw err;
    }
  },
};
