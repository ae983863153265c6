import { readSubject, seq, set, oid, utf8, tlv } from '../../src/identity/der.ts';
import { check, InvariantError, type FuzzTarget } from '../engine/target.ts';

/**
 * DER certificates as a client presents them: the subject reader. Its refusals are plain Errors whose
 * message starts with `DER:`; any other exception is a bug. A subject built by the encoder reads back.
 */
export const target: FuzzTarget = {
  name: 'der',
  covers: ['src/identity/der'],
  maxLen: 2048,
  dictionary: [Buffer.from([0x30, 0x82]), Buffer.from([0x30, 0x81]), Buffer.from([0xa0, 0x03, 0x02, 0x01, 0x02]), Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]), Buffer.from([0x0c]), Buffer.from([0x13]), Buffer.from([0x1e]), Buffer.from([0x16]), Buffer.from([0x84, 0xff, 0xff, 0xff, 0xff])],
  run(data) {
    try {
      const subject = readSubject(data);
      check(subject.every(([o, v]) => typeof o === 'string' && typeof v === 'string'), 'subject attribute not strings');
    } catch (err) {
      if (err instanceof InvariantError || !(err instanceof Error) || err.constructor !== Error || !err.message.startsWith('DER:')) throw err;
    }
    // Round trip: a certificate-shaped structure with the input as the CN.
    const cn = data.toString('utf8').replace(/\ufffd/g, '');
    const name = seq(set(seq(oid('2.5.4.3'), utf8(cn))));
    const tbs = seq(tlv(0xa0, Buffer.from([2, 1, 2])), tlv(0x02, Buffer.from([1])), seq(), seq(), seq(), name);
    const got = readSubject(seq(tbs));
    check(got.length === 1 && got[0][0] === '2.5.4.3' && got[0][1] === cn, 'subject does not round-trip');
  },
};
