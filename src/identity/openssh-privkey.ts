import crypto, { type KeyObject } from 'node:crypto';
import { SshReader, SshWireError, quote, sshString, u32 } from './ssh-wire.ts';
import { b64u, publicKeyBlob, unb64u } from './ssh-keys.ts';

/**
 * OpenSSH private key format (PROTOCOL.key), unencrypted Ed25519 only: vigil's own keys and the keys it
 * generates for users, in the format `ssh -i`, ssh-keygen and ssh2 all read.
 */
const OPENSSH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const PEM_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----';
const PEM_END = '-----END OPENSSH PRIVATE KEY-----';

export function encodeOpenSshPrivateKey(privateKey: KeyObject, comment = ''): string {
  const jwk = privateKey.export({ format: 'jwk' });
  if (jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || !jwk.d) throw new SshWireError('only Ed25519 private keys can be written in OpenSSH format');
  const seed = unb64u(jwk.d);
  const pub = unb64u(jwk.x);
  const pubBlob = publicKeyBlob({ type: 'ssh-ed25519', key: pub });
  const check = crypto.randomBytes(4);
  let priv = Buffer.concat([check, check, sshString('ssh-ed25519'), sshString(pub), sshString(Buffer.concat([seed, pub])), sshString(comment)]);
  const padLen = (8 - (priv.length % 8)) % 8;
  priv = Buffer.concat([priv, Buffer.from(Array.from({ length: padLen }, (_, i) => i + 1))]);
  const body = Buffer.concat([OPENSSH_MAGIC, sshString('none'), sshString('none'), sshString(''), u32(1), sshString(pubBlob), sshString(priv)]);
  const b64 = body.toString('base64').replace(/.{70}/g, '$&\n').replace(/\n$/, '');
  return `${PEM_BEGIN}\n${b64}\n${PEM_END}\n`;
}

export function parseOpenSshPrivateKey(pem: string): { privateKey: KeyObject; comment: string } {
  const m = pem.match(/-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/);
  if (!m) throw new SshWireError('not an OpenSSH private key');
  const body = Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
  if (!body.subarray(0, OPENSSH_MAGIC.length).equals(OPENSSH_MAGIC)) throw new SshWireError('bad OpenSSH private key magic');
  const r = new SshReader(body, OPENSSH_MAGIC.length);
  const cipher = r.text('cipher');
  r.text('kdf');
  r.string('kdf options');
  if (cipher !== 'none') throw new SshWireError('encrypted OpenSSH private keys are not supported here');
  if (r.uint32('key count') !== 1) throw new SshWireError('expected exactly one key');
  r.string('public key');
  const pr = new SshReader(r.string('private section'));
  if (pr.uint32('check') !== pr.uint32('check')) throw new SshWireError('private key check bytes differ');
  const type = pr.text('key type');
  if (type !== 'ssh-ed25519') throw new SshWireError(`unsupported private key type ${quote(type)}`);
  const pub = pr.string('ed25519 public');
  const secret = pr.string('ed25519 secret');
  const comment = pr.text('comment');
  if (pub.length !== 32 || secret.length !== 64) throw new SshWireError('bad ed25519 private key sizes');
  const privateKey = crypto.createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', d: b64u(secret.subarray(0, 32)), x: b64u(pub) }, format: 'jwk' });
  return { privateKey, comment };
}

