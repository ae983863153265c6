import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';

/**
 * A private temp directory per worker, removed when the worker exits. In memory (/dev/shm) where there
 * is one: file-based targets write and read a file per input, and opening files on a disk-backed /tmp
 * was most of their time (the code under test reads them through the same fs calls either way).
 */
export function scratchDir(name: string): string {
  const shm = '/dev/shm';
  let root = os.tmpdir();
  try {
    fs.accessSync(shm, fs.constants.W_OK);
    root = shm;
  } catch {
    /* no tmpfs: the system temp dir */
  }
  const dir = fs.mkdtempSync(path.join(root, `vigil-fuzz-${name}-`));
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
