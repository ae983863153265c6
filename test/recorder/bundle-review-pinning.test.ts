import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { describe, it, expect, afterAll } from 'vitest';
import tar from 'tar-stream';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { verifyBundle, BUNDLE_EXIT_CODES, type BundleManifest } from '../../recorder/bundle/index.ts';
import { replicaIdOf } from '../../recorder/audit/shared-index.ts';
import { auditOptions, sampleEvent } from './helpers.ts';

/**
 * Review of what an auditor pins and is told when verifying a bundle: the signing key is pinned by its
 * whole SHA-256 fingerprint (or the key itself), never by the 16-hex id alone; and a bundle says whose
 * chain it covers, so "complete" is not read as "every replica's events". A real audit log in a temp data
 * dir, the vigil CLI.
 */

const dirs: string[] = [];
const STORE_URL_ENV = 'VIGIL_TEST_BUNDLE_PINNING_STORE_URL';
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  delete process.env[STORE_URL_ENV];
});

const iso = (ms: number) => new Date(ms).toISOString();

/** A data dir with a signed log of two events an hour ago, bundled with `config` (a file beside it). */
async function bundled(prefix: string, config: Record<string, unknown> = {}) {
  const base = tempDir(prefix);
  dirs.push(base);
  const dataDir = path.join(base, 'data');
  await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
  const paths = dataPaths(dataDir);
  const t0 = Date.now() - 3600_000;
  const w = await openAuditLog(paths.audit, auditOptions(paths.auditSigningKey));
  await w.append(sampleEvent(1, { time: new Date(t0), session_id: 'S-1' }));
  await w.append(sampleEvent(2, { time: new Date(t0 + 60_000), session_id: 'S-2' }));
  await w.close();
  const configFile = path.join(base, 'vigil.json');
  fs.writeFileSync(configFile, JSON.stringify({ data_dir: dataDir, ...config }));
  const out = path.join(base, 'case.tar');
  const made = await runCliCaptured(['audit', 'bundle', '--config', configFile, '--since', iso(t0 - 30_000), '--until', iso(t0 + 90_000), '--out', out]);
  expect(made.code, made.err).toBe(0);
  const publicPem = fs.readFileSync(paths.auditPublicKey, 'utf8');
  const fingerprint = crypto.createHash('sha256').update(crypto.createPublicKey(publicPem).export({ type: 'spki', format: 'der' })).digest('hex');
  const keyIdShort = fingerprint.slice(0, 16);
  return { base, dataDir, out, pubFile: paths.auditPublicKey, fingerprint, keyIdShort, made };
}

/** The manifest as the archive holds it. */
async function manifestOf(file: string): Promise<BundleManifest> {
  const ex = tar.extract();
  let manifest: BundleManifest | undefined;
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      if (h.name === 'manifest.json') manifest = JSON.parse(Buffer.concat(chunks).toString('utf8')) as BundleManifest;
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
    fs.createReadStream(file).pipe(ex);
  });
  return manifest!;
}

describe('verify-bundle --key pins the whole key', () => {
  it('accepts the full SHA-256 fingerprint and prints it; one sharing only the 16-hex id is the wrong key', async () => {
    const b = await bundled('vigil-bundle-pin-');
    const right = await runCliCaptured(['audit', 'verify-bundle', b.out, '--key', b.fingerprint]);
    expect(right.code, right.err).toBe(0);
    expect(right.out).toContain(`fingerprint ${b.fingerprint}`);
    expect(right.out).toContain('the trusted key given');
    // Another key whose short id is the same (what a 64-bit id lets someone search for) differs past it.
    const lookalike = b.keyIdShort + (BigInt('0x' + b.fingerprint.slice(16)) ^ 1n).toString(16).padStart(48, '0');
    const wrong = await runCliCaptured(['audit', 'verify-bundle', b.out, '--key', lookalike]);
    expect(wrong.code).toBe(BUNDLE_EXIT_CODES.wrong_key);
    expect(wrong.err).toMatch(/^bundle INVALID \[wrong_key\]: /);
    expect(wrong.err).toContain(lookalike);
    const lib = await verifyBundle(b.out, { expectedFingerprint: lookalike });
    expect(lib.problems.map((p) => p.kind)).toEqual(['wrong_key']);
    expect(lib.keyFingerprint).toBe(b.fingerprint);
  });

  it('without --key, verify prints the full fingerprint of the signing key to compare with the published one', async () => {
    const b = await bundled('vigil-bundle-fp-');
    const r = await runCliCaptured(['audit', 'verify-bundle', b.out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`SHA-256 fingerprint ${b.fingerprint}`);
    expect(r.out).toMatch(/compare the whole fingerprint/);
    const m = await manifestOf(b.out);
    expect(m.gateway.audit_key_fingerprint).toBe(b.fingerprint);
    expect(m.gateway.audit_key_id).toBe(b.keyIdShort);
  });

  it('refuses the 16-hex key id as a pin (usage error), naming the full fingerprint or the key instead', async () => {
    const b = await bundled('vigil-bundle-shortid-');
    const r = await runCliCaptured(['audit', 'verify-bundle', b.out, '--key', b.keyIdShort]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/16-hex key id, too short to pin a key/);
    expect(r.err).toMatch(/full SHA-256 fingerprint \(64 hex/);
    // The key file itself still pins it.
    const byFile = await runCliCaptured(['audit', 'verify-bundle', b.out, '--key', b.pubFile]);
    expect(byFile.code, byFile.err).toBe(0);
  });
});

describe('a bundle names the replica whose chain it covers', () => {
  it('with a shared (PostgreSQL) store: the manifest names the replica and the shared store, verify says other replicas\' events are not in it', async () => {
    // The bundle reads the local chain only; the store's URL is never dialled, its kind says it is shared.
    process.env[STORE_URL_ENV] = 'postgres://nobody:nothing@127.0.0.1:1/app?sslmode=disable';
    const b = await bundled('vigil-bundle-replica-', { store: { kind: 'postgres', url: { env: STORE_URL_ENV }, schema: 'bundle_pinning' } });
    const replica = replicaIdOf(b.dataDir);
    const m = await manifestOf(b.out);
    expect(m.chain_of).toEqual({ replica, store_shared: true });
    expect(b.made.err).toContain(`replica ${replica}'s chain`);
    const r = await runCliCaptured(['audit', 'verify-bundle', b.out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`covers the chain of replica ${replica} only`);
    expect(r.out).toMatch(/events they recorded are in their own chains, not in this bundle/);
    // The id the gateway uses for this data dir (DATA/replica-id), as the shared index names its chain.
    const text = JSON.parse((await runCliCaptured(['audit', 'verify-bundle', b.out, '--json'])).out) as { manifest: BundleManifest; key_fingerprint: string };
    expect(text.manifest.chain_of).toEqual({ replica, store_shared: true });
    expect(text.key_fingerprint).toBe(b.fingerprint);
  });

  it('with the default (sqlite) store: the replica is named and the store said not shared', async () => {
    const b = await bundled('vigil-bundle-single-');
    const replica = replicaIdOf(b.dataDir);
    expect((await manifestOf(b.out)).chain_of).toEqual({ replica, store_shared: false });
    const r = await runCliCaptured(['audit', 'verify-bundle', b.out]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`covers the chain of replica ${replica} (the store was not shared`);
  });
});
