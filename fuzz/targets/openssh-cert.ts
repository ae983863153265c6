import { encodeCertificate, parseCertificate, parseCertificateLine } from '../../src/identity/openssh-cert.ts';
import { parsePublicKeyBlob, parsePublicKeyLine, parseSignatureBlob, toKeyObject, verifySshSignature } from '../../src/identity/ssh-keys.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, expectErrors, type FuzzTarget } from '../engine/target.ts';

const sorted = (opts: { name: string }[]): boolean => opts.every((o, i) => i === 0 || Buffer.compare(Buffer.from(opts[i - 1].name), Buffer.from(o.name)) < 0);

/**
 * `original` equals `reencoded` (whose reserved string is empty) except for the contents of the reserved
 * string, which sits just before the signature key and the signature.
 */
function sameButReserved(original: Buffer, reencoded: Buffer, keyLen: number, sigLen: number): boolean {
  const tail = 4 + keyLen + 4 + sigLen;
  const head = reencoded.length - 4 - tail;
  if (head < 0 || original.length < head + 4 + tail) return false;
  const reserved = original.readUInt32BE(head);
  return (
    original.length === head + 4 + reserved + tail &&
    original.subarray(0, head).equals(reencoded.subarray(0, head)) &&
    original.subarray(original.length - tail).equals(reencoded.subarray(reencoded.length - tail))
  );
}

/** Errors node's crypto raises for a key it cannot import: a refusal, not a crash. */
const cryptoRefusal = (err: unknown): boolean => err instanceof Error && /^ERR_(OSSL|CRYPTO|INVALID_ARG)/.test(String((err as { code?: string }).code));

/**
 * OpenSSH wire blobs a client sends: certificates (blob and `type base64` line), public keys (blob,
 * authorized_keys line, key object import) and signatures. Failures are ProtocolError (SshWireError);
 * a parsed certificate re-encodes to the same bytes.
 */
export const target: FuzzTarget = {
  name: 'openssh-cert',
  covers: ['src/identity/'],
  maxLen: 4096,
  dictionary: ['ssh-ed25519-cert-v01@openssh.com', 'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'nistp256', 'rsa-sha2-512', 'permit-pty', 'force-command', 'source-address', Buffer.from([0, 0, 0, 0x20]), Buffer.from([0, 0, 0, 0]), Buffer.from([0xff, 0xff, 0xff, 0xff])],
  run(data) {
    const cert = expectErrors(() => parseCertificate(data), ProtocolError);
    if (cert) {
      // The encoder writes options and extensions sorted by name (PROTOCOL.certkeys); the parser also
      // accepts another order (the signature covers the bytes as received). Sorted input re-encodes
      // byte for byte, but for the `reserved` string: the encoder writes it empty, the parser skips its
      // contents as OpenSSH does ("ignored in this version of the protocol"). Any input re-encodes to a
      // certificate that parses to the same fields.
      const again = encodeCertificate(cert, () => cert.signature);
      if (sorted(cert.criticalOptions) && sorted(cert.extensions)) check(sameButReserved(data, again, cert.signatureKey.length, cert.signature.length), 'certificate does not re-encode to the same bytes');
      const reparsed = parseCertificate(again);
      check(reparsed.keyId === cert.keyId && reparsed.serial === cert.serial && JSON.stringify(reparsed.principals) === JSON.stringify(cert.principals), 're-encoded certificate parses differently');
    }
    const text = data.toString('latin1');
    expectErrors(() => parseCertificateLine(text), ProtocolError);
    expectErrors(() => parseCertificateLine(`ssh-ed25519-cert-v01@openssh.com ${data.toString('base64')}`), ProtocolError);
    const key = expectErrors(() => parsePublicKeyBlob(data), ProtocolError);
    expectErrors(() => parsePublicKeyLine(text), ProtocolError);
    if (key) {
      try {
        toKeyObject(key);
        verifySshSignature(key, data, data, 'ssh-ed25519');
      } catch (err) {
        if (!(err instanceof ProtocolError) && !cryptoRefusal(err)) throw err;
      }
    }
    expectErrors(() => parseSignatureBlob(data), ProtocolError);
  },
};
