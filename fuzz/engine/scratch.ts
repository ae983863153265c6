import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

/** A private temp directory per worker, removed when the worker exits. */
export function scratchDir(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vigil-fuzz-${name}-`));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The Ed25519 key the audit fixture is signed with, derived from a fixed public seed: the committed
 * segments verify in every run without a key file in the repository. Not a secret, never used outside
 * the fuzz harness.
 */
export function fixtureAuditKey(): { privateKey: crypto.KeyObject; publicPem: string } {
  const seed = crypto.createHash('sha256').update('vigil fuzz audit fixture').digest();
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const privateKey = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const publicPem = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  return { privateKey, publicPem };
}

/** The fixture files (fuzz/fixtures/). */
export const FIXTURES = new URL('../fixtures/', import.meta.url);
