import crypto from 'node:crypto';
import { checkTokenSignature, TOKEN_PREFIX } from '../../src/identity/token.ts';
import { check, type FuzzTarget } from '../engine/target.ts';

const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');

/**
 * Bearer tokens: the input as a token string (must never verify: the fuzzer cannot forge Ed25519), and
 * the input as a payload signed with the right key, so the shape checks behind the signature are
 * reached too. checkTokenSignature returns a verdict and never throws.
 */
export const target: FuzzTarget = {
  name: 'token',
  covers: ['src/identity/token'],
  maxLen: 4096,
  dictionary: ['vigil.', '{"v":1,"sub":"alice","roles":["dba"],"serial":"01","nbf":0,"exp":99999999999}', '"grant":', '"roles":[', '9007199254740993', '1e3', 'null', '"__proto__"'],
  run(data) {
    const asToken = checkTokenSignature(data.toString('latin1'), publicKey);
    check(!asToken.ok, 'an unsigned input verified');
    const body = data.toString('base64url');
    const signed = `${TOKEN_PREFIX}.${body}`;
    const sig = crypto.sign(null, Buffer.from(signed), privateKey).toString('base64url');
    const r = checkTokenSignature(`${signed}.${sig}`, publicKey);
    if (r.ok) {
      check(typeof r.payload.sub === 'string' && r.payload.sub.length > 0 && Array.isArray(r.payload.roles), 'a token of the wrong shape was accepted');
      check(Number.isSafeInteger(r.payload.nbf) && Number.isSafeInteger(r.payload.exp), 'token validity not integers');
    }
  },
};
