import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { pipeline } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import tar from 'tar-stream';
import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, PASSWORDS, type PostgresHandle } from '../support/postgres.ts';
import { startTestGateway, type TestGateway, type IssuedFiles } from '../support/gateway.ts';
import { tempDir, secretsDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { runClient } from '../ssh/harness.ts';
import { run as runPg } from '../postgres/helpers.ts';
import { publicKeyLine } from '../../proxies/ssh/known-hosts.ts';
import { recordHash, signCheckpoint, keyId } from '../../recorder/audit/record.ts';
import { canonicalJson } from '../../recorder/audit/canonical.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { BUNDLE_EXIT_CODES } from '../../recorder/bundle/index.ts';
import { openAuditLog } from '../../recorder/audit/index.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { auditOptions, sampleEvent } from './helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const VIGIL = path.join(ROOT, 'bin/vigil.js');

/** `vigil audit verify-bundle` as its own process, run from `cwd` with no config or data dir in reach. */
function verifyBundleCli(cwd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const env = { ...process.env };
    delete env.VIGIL_CONFIG;
    const child = spawn(process.execPath, [VIGIL, 'audit', 'verify-bundle', ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function readTar(file: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const ex = tar.extract();
  ex.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      out.set(h.name, Buffer.concat(chunks));
      next();
    });
  });
  await pipeline(fs.createReadStream(file), ex as unknown as Writable);
  return out;
}

async function writeTar(file: string, members: Map<string, Buffer>): Promise<void> {
  const pack = tar.pack();
  const done = pipeline(pack as unknown as NodeJS.ReadableStream, fs.createWriteStream(file));
  for (const [name, data] of members) pack.entry({ name, size: data.length }, data);
  pack.finalize();
  await done;
}

const lines = (b: Buffer) => b.toString().split('\n').filter(Boolean);
const joinLines = (l: string[]) => Buffer.from(l.map((x) => x + '\n').join(''));
type Rec = { seq: number; prev: string; hash: string; event: Record<string, unknown> & { type: string; details?: Record<string, unknown>; session_id?: string } };
const parse = (l: string) => JSON.parse(l) as Rec;
const line = (r: Rec) => `{"seq":${r.seq},"prev":"${r.prev}","hash":"${r.hash}","event":${canonicalJson(r.event)}}`;

describe('vigil audit bundle / verify-bundle: signed evidence from real sessions', () => {
  let sshd: SshdHandle;
  let pg: PostgresHandle;
  let tg: TestGateway;
  let base: string;
  let alice: IssuedFiles;
  let bob: IssuedFiles;
  let knownHosts: string;
  let bundle: string;
  let verifyDir: string;
  let since: string;
  let until: string;
  const sshPort = () => tg.ports.ssh!;

  const sshRun = (creds: IssuedFiles, command: string) =>
    runClient('ssh', [
      '-F', '/dev/null', '-p', String(sshPort()), '-o', `IdentityFile=${creds.sshKey}`, '-o', `CertificateFile=${creds.sshCert}`, '-o', 'IdentitiesOnly=yes',
      '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', `${sshd.user}@web1@127.0.0.1`, command,
    ]);
  const psql = (creds: IssuedFiles, user: string, sql: string) =>
    runPg('psql', ['-X', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=${user} sslmode=verify-full sslrootcert=${creds.ca} sslcert=${creds.crt} sslkey=${creds.key}`, '-c', sql]);

  beforeAll(async () => {
    sshd = await startSshd();
    pg = await startPostgres();
    base = tempDir('vigil-bundle-');
    const secret = secretsDir(base);
    tg = await startTestGateway(
      {
        mysql: { enabled: false },
        targets: [
          { name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
          { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { file: secret('scram', PASSWORDS.scram_user) } },
        ],
        certs: { clock_skew: 0 },
        roles: [{ name: 'eng', targets: ['*'], logins: ['*'], databases: ['app'] }],
      },
      base,
    );
    knownHosts = path.join(base, 'known_hosts');
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${sshPort()} ${publicKeyLine(tg.gw.services.identity.sshHostKey())}\n`);
    alice = await tg.issue({ user: 'alice', roles: ['eng'] });
    bob = await tg.issue({ user: 'bob', roles: ['eng'] });

    since = new Date().toISOString();
    // Two SSH sessions with recordings and one database session for alice; bob works alongside her.
    const a1 = await sshRun(alice, 'echo evidence-one');
    expect(a1.stdout).toContain('evidence-one');
    const a2 = await sshRun(alice, 'echo evidence-two; uname -s');
    expect(a2.stdout).toContain('evidence-two');
    const q = await psql(alice, 'alice', 'SELECT 40 + 2 AS answer');
    expect(q.stdout).toContain('42');
    expect((await sshRun(bob, 'echo bob-was-here')).stdout).toContain('bob-was-here');
    expect((await psql(bob, 'bob', 'SELECT 7')).code).toBe(0);
    for (const user of ['alice', 'bob']) {
      await tg.waitForEvent((e) => e.type === 'session.end' && e.actor?.user === user && e.target?.protocol === 'postgres');
    }
    await tg.waitForEvent((e) => e.type === 'session.end' && e.actor?.user === 'bob' && e.target?.protocol === 'ssh');
    until = new Date().toISOString();
    // Closing seals the log with a checkpoint that signs its last record.
    await tg.stop();

    bundle = path.join(base, 'case.tar');
    const made = await runCliCaptured(['audit', 'bundle', '--data', tg.dataDir, '--since', since, '--until', until, '--user', 'alice', '--out', bundle]);
    expect(made.err).toMatch(/bundle .*case\.tar: \d+ event\(s\), 2 recording\(s\)/);
    expect(made.code).toBe(0);
    expect(fs.statSync(bundle).mode & 0o777).toBe(0o600);
    // Only the archive travels.
    verifyDir = tempDir('vigil-bundle-verify-');
    fs.copyFileSync(bundle, path.join(verifyDir, 'case.tar'));
  }, 120_000);

  afterAll(async () => {
    await tg?.stop().catch(() => {});
    await sshd?.stop();
    await pg?.stop();
    for (const d of [base, verifyDir]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  /** Write a tampered copy of the bundle into the verify dir and verify it there. */
  async function verifyTampered(name: string, change: (m: Map<string, Buffer>) => void, extra: string[] = []) {
    const m = await readTar(bundle);
    change(m);
    await writeTar(path.join(verifyDir, name), m);
    return verifyBundleCli(verifyDir, [name, ...extra]);
  }

  it('the bundle verifies on a machine with only the archive: alice\'s events, both SSH recordings, the chain, the signed manifest', async () => {
    const r = await verifyBundleCli(verifyDir, ['case.tar']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^bundle ok: \d+ event\(s\) for --user alice from /);
    expect(r.stdout).toContain('2 recording(s) intact');
    expect(r.stdout).toMatch(/precedes the range; seq \d+ follows the range/);

    const m = await readTar(bundle);
    const events = lines(m.get('events.jsonl')!).map(parse);
    const chain = lines(m.get('chain.jsonl')!).map(parse);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e.event.actor && (e.event.actor as { user: string }).user === 'alice')).toBe(true);
    // Both protocols, and the statement as sent.
    expect(events.some((e) => e.event.type === 'db.query' && String(e.event.details?.sql).includes('40 + 2'))).toBe(true);
    expect(events.some((e) => e.event.type === 'ssh.exec' && e.event.details?.command === 'echo evidence-one')).toBe(true);
    // Bob's events of the same range are in the chain (they prove nothing was withheld), not in the selection.
    expect(chain.some((r) => (r.event.actor as { user?: string } | undefined)?.user === 'bob')).toBe(true);
    const casts = [...m.keys()].filter((k) => k.startsWith('recordings/'));
    expect(casts).toHaveLength(2);
    expect(casts.map((k) => m.get(k)!.toString()).join('')).toContain('evidence-one');
    const manifest = JSON.parse(m.get('manifest.json')!.toString());
    expect(manifest).toMatchObject({ format: 'vigil-evidence-bundle-v1', filter: { user: 'alice' }, counts: { events: events.length, chain_records: chain.length, recordings: 2 } });
    // Making it is on the record, with the manifest's hash.
    const { records } = await searchAuditLog(dataPaths(tg.dataDir).audit, { type: 'audit.bundle' });
    expect(records).toHaveLength(1);
    expect(records[0].event.details).toMatchObject({ manifest_sha256: crypto.createHash('sha256').update(m.get('manifest.json')!).digest('hex'), counts: { events: events.length } });
  });

  it('an event altered is detected (exit 1): in the selection alone, or in the selection and the chain', async () => {
    const alter = (l: string) => l.replace('40 + 2', '40 + 3');
    const only = await verifyTampered('altered-event.tar', (m) => m.set('events.jsonl', joinLines(lines(m.get('events.jsonl')!).map(alter))));
    expect(only.code).toBe(BUNDLE_EXIT_CODES.altered);
    expect(only.stderr).toMatch(/^bundle INVALID \[altered\]: event seq \d+ \(db\.query\) differs from the chain's record: altered/);
    const both = await verifyTampered('altered-both.tar', (m) => {
      m.set('events.jsonl', joinLines(lines(m.get('events.jsonl')!).map(alter)));
      m.set('chain.jsonl', joinLines(lines(m.get('chain.jsonl')!).map(alter)));
    });
    expect(both.code).toBe(BUNDLE_EXIT_CODES.altered);
    expect(both.stderr).toMatch(/^bundle INVALID \[altered\]: record seq \d+ \(db\.query\) was altered: its hash does not match its content/);
  });

  it('an event removed (from the selection and the chain) is detected (exit 3)', async () => {
    const r = await verifyTampered('removed.tar', (m) => {
      const isQuery = (l: string) => l.includes('40 + 2');
      m.set('events.jsonl', joinLines(lines(m.get('events.jsonl')!).filter((l) => !isQuery(l))));
      m.set('chain.jsonl', joinLines(lines(m.get('chain.jsonl')!).filter((l) => !isQuery(l))));
    });
    expect(r.code).toBe(BUNDLE_EXIT_CODES.removed);
    expect(r.stderr).toMatch(/^bundle INVALID \[removed\]: records seq \d+ are missing from the chain \(removed\)/);
  });

  it('an event of the range withheld from the selection is detected (exit 4)', async () => {
    const r = await verifyTampered('withheld.tar', (m) => {
      m.set('events.jsonl', joinLines(lines(m.get('events.jsonl')!).filter((l) => !l.includes('echo evidence-two'))));
    });
    expect(r.code).toBe(BUNDLE_EXIT_CODES.incomplete);
    expect(r.stderr).toMatch(/^bundle INVALID \[incomplete\]: event seq \d+ \(ssh\.exec(\.start)?, [^,]+, user alice\) matches the filter but is not among the selected events: withheld/);
  });

  it('a recording swapped for another is detected (exit 5)', async () => {
    const r = await verifyTampered('swapped.tar', (m) => {
      const [a, b] = [...m.keys()].filter((k) => k.startsWith('recordings/'));
      const da = m.get(a)!;
      m.set(a, m.get(b)!);
      m.set(b, da);
    });
    expect(r.code).toBe(BUNDLE_EXIT_CODES.recording);
    expect(r.stderr).toMatch(/^bundle INVALID \[recording\]: recording [\w-]+\/ch\d+\.cast does not match its SHA-256 in the manifest: swapped or altered/);
  });

  it('a broken manifest signature is detected (exit 7)', async () => {
    const r = await verifyTampered('manifest.tar', (m) => {
      const manifest = JSON.parse(m.get('manifest.json')!.toString());
      manifest.created_by.user = 'someone-else';
      m.set('manifest.json', Buffer.from(JSON.stringify(manifest, null, 2) + '\n'));
    });
    expect(r.code).toBe(BUNDLE_EXIT_CODES.manifest);
    expect(r.stderr).toMatch(/^bundle INVALID \[manifest\]: the manifest signature does not verify with audit key [0-9a-f]{16}/);
  });

  it('checkpoints from another key (the chain re-hashed and re-signed by a forger) are detected (exit 6)', async () => {
    const other = crypto.generateKeyPairSync('ed25519');
    const r = await verifyTampered('other-key.tar', (m) => {
      // A forger rewrites alice's query, re-links every record after it and signs the checkpoints with their own key.
      const chain = lines(m.get('chain.jsonl')!).map(parse);
      let prev = chain[0].prev;
      for (const rec of chain) {
        if (rec.event.type === 'db.query' && String(rec.event.details?.sql).includes('40 + 2')) rec.event.details!.sql = 'SELECT 1';
        if (rec.event.type === 'audit.checkpoint') {
          rec.event.details = { ...rec.event.details, seq: rec.seq - 1, head: prev, sig: signCheckpoint(other.privateKey, rec.seq - 1, prev), key_id: keyId(other.publicKey) };
        }
        rec.prev = prev;
        rec.hash = recordHash(rec.seq, rec.prev, canonicalJson(rec.event));
        prev = rec.hash;
      }
      const bySeq = new Map(chain.map((c) => [c.seq, line(c)]));
      m.set('chain.jsonl', joinLines(chain.map(line)));
      m.set('events.jsonl', joinLines(lines(m.get('events.jsonl')!).map((l) => bySeq.get(parse(l).seq)!)));
    });
    expect(r.code).toBe(BUNDLE_EXIT_CODES.checkpoint);
    expect(r.stderr).toMatch(/^bundle INVALID \[checkpoint\]: checkpoint seq \d+ is not signed by the bundle's audit key [0-9a-f]{16}/);
  });

  it('--key with another key than the bundle\'s is refused (exit 9); with the gateway\'s own key it passes', async () => {
    const { publicKey } = crypto.generateKeyPairSync('ed25519');
    fs.writeFileSync(path.join(verifyDir, 'other.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const wrong = await verifyBundleCli(verifyDir, ['case.tar', '--key', 'other.pub']);
    expect(wrong.code).toBe(BUNDLE_EXIT_CODES.wrong_key);
    expect(wrong.stderr).toMatch(/^bundle INVALID \[wrong_key\]: the bundle is signed by audit key [0-9a-f]{16}, not by the trusted key/);
    fs.copyFileSync(dataPaths(tg.dataDir).auditPublicKey, path.join(verifyDir, 'gateway.pub'));
    const right = await verifyBundleCli(verifyDir, ['case.tar', '--key', 'gateway.pub']);
    expect(right.code).toBe(0);
    expect(right.stdout).toContain('(the trusted key given)');
  });
});

describe('vigil audit bundle across a retention purge', () => {
  const DAY = 86_400_000;
  afterEach(() => vi.useRealTimers());

  it('a range reaching back past a purge starts at the anchor, vouched for by the audit.purged event it ships', async () => {
    const since = new Date(Date.now() - 3_600_000).toISOString();
    const base = tempDir('vigil-bundle-purge-');
    const dataDir = path.join(base, 'data');
    const configPath = path.join(base, 'vigil.yaml');
    fs.writeFileSync(configPath, [`data_dir: ${dataDir}`, 'retention:', '  floor: 90d', '  default: 100d', ''].join('\n'));
    await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
    const audit = dataPaths(dataDir).audit;
    const w = await openAuditLog(audit, auditOptions(dataPaths(dataDir).auditSigningKey, { segmentMaxBytes: 4000 }));
    for (let i = 0; i < 40; i++) await w.append(sampleEvent(i, { session_id: `S${Math.floor(i / 10)}` }));
    await w.close();
    const queries = (await searchAuditLog(audit, { type: 'db.query' })).records;
    // --until at milliseconds covers its whole last millisecond (event times carry microseconds).
    const until = new Date(queries[queries.length - 1].event.time).toISOString();

    // 120 days later the old segments go; the newest one of that writer stays, anchored by the seal before it.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 120 * DAY });
    const purged = await runCliCaptured(['audit', 'purge', '--config', configPath, '--reason', 'retention test']);
    vi.useRealTimers();
    expect(purged.code).toBe(0);
    const anchor = JSON.parse(JSON.parse(fs.readFileSync(path.join(audit, 'anchor.json'), 'utf8')).record) as { seq: number };
    const kept = (await searchAuditLog(audit, { type: 'db.query' })).records;
    expect(kept.length).toBeLessThan(queries.length);

    const bundle = path.join(base, 'purge.tar');
    const made = await runCliCaptured(['audit', 'bundle', '--config', configPath, '--since', since, '--until', until, '--out', bundle]);
    expect(made.err).toMatch(/bundle .*purge\.tar: \d+ event\(s\)/);
    expect(made.code).toBe(0);
    const m = await readTar(bundle);
    const manifest = JSON.parse(m.get('manifest.json')!.toString());
    expect(manifest.purge).toMatchObject({ anchor_seq: anchor.seq });
    // Every kept query of the range is selected; none of the purged ones can be.
    const selected = lines(m.get('events.jsonl')!).map(parse).filter((r) => r.event.type === 'db.query');
    expect(selected.map((r) => r.seq)).toEqual(kept.filter((r) => r.event.time <= until.replace('Z', '999Z')).map((r) => r.seq));

    const dir = tempDir('vigil-bundle-purge-verify-');
    fs.copyFileSync(bundle, path.join(dir, 'purge.tar'));
    const ok = await verifyBundleCli(dir, ['purge.tar']);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`records before seq ${anchor.seq + 1} were purged by retention (anchor seq ${anchor.seq}, audit.purged seq ${manifest.purge.purged_event_seq})`);

    // Without the audit.purged run the anchor is only someone's claim: the start of the range is not proven.
    const cut = new Map(m);
    cut.set('chain.jsonl', joinLines(lines(m.get('chain.jsonl')!).filter((l) => parse(l).seq <= manifest.chain_seq.last)));
    await writeTar(path.join(dir, 'cut.tar'), cut);
    const bad = await verifyBundleCli(dir, ['cut.tar']);
    expect(bad.code).toBe(BUNDLE_EXIT_CODES.incomplete);
    expect(bad.stderr).toMatch(/^bundle INVALID \[incomplete\]: the chain starts at seq \d+, which is not a retention anchor vouched for by an audit\.purged event/);
  });
});

describe('vigil audit bundle / verify-bundle: refusals', () => {
  async function dataDirWithLog() {
    const base = tempDir('vigil-bundle-edge-');
    const dataDir = path.join(base, 'data');
    const configPath = path.join(base, 'vigil.yaml');
    fs.writeFileSync(configPath, `data_dir: ${dataDir}\n`);
    await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
    const audit = dataPaths(dataDir).audit;
    const since = new Date(Date.now() - 1000).toISOString();
    const w = await openAuditLog(audit, auditOptions(dataPaths(dataDir).auditSigningKey));
    for (let i = 0; i < 20; i++) await w.append(sampleEvent(i));
    await w.close();
    return { base, audit, configPath, since };
  }

  it('no bundle of a log that does not verify, nor of an empty range; the failure is on the record', async () => {
    const { base, audit, configPath, since } = await dataDirWithLog();
    const out = path.join(base, 'x.tar');
    const empty = await runCliCaptured(['audit', 'bundle', '--config', configPath, '--since', '2001-01-01T00:00:00Z', '--until', '2001-01-02T00:00:00Z', '--out', out]);
    expect(empty.code).toBe(1);
    expect(empty.err).toContain('no audit records between 2001-01-01T00:00:00.000000Z and 2001-01-02T00:00:00.999999Z [VIGIL_BUNDLE]');
    expect(fs.existsSync(out)).toBe(false);
    const [seg] = fs.readdirSync(audit).filter((n) => n.endsWith('.jsonl'));
    const file = path.join(audit, seg);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"rows":3', '"rows":4'));
    const bad = await runCliCaptured(['audit', 'bundle', '--config', configPath, '--since', since, '--out', out]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/the audit log does not verify \(record seq \d+ was altered \(hash mismatch\)\); no bundle was made/);
    expect(fs.existsSync(out)).toBe(false);
    const failures = (await searchAuditLog(audit, { type: 'audit.bundle' })).records.map((r) => r.event);
    expect(failures.map((e) => e.outcome)).toEqual(['failure', 'failure']);
  });

  it('a log its writer has not signed yet: no bundle, and the message says to wait for the first checkpoint', async () => {
    const base = tempDir('vigil-bundle-young-');
    const dataDir = path.join(base, 'data');
    const configPath = path.join(base, 'vigil.json');
    fs.writeFileSync(configPath, JSON.stringify({ data_dir: dataDir }));
    await initIdentity(dataDir, parseConfig({ data_dir: dataDir }, base));
    const audit = dataPaths(dataDir).audit;
    // The gateway has just started: records written, its first checkpoint not due yet.
    const w = await openAuditLog(audit, auditOptions(dataPaths(dataDir).auditSigningKey, { checkpointIntervalMs: 3_600_000, checkpointEvery: 1_000_000 }));
    try {
      for (let i = 0; i < 3; i++) await w.append(sampleEvent(i));
      const out = path.join(base, 'young.tar');
      const young = await runCliCaptured(['audit', 'bundle', '--config', configPath, '--since', '1h', '--out', out]);
      expect(young.code).toBe(1);
      expect(young.err).toContain('the audit log (3 records) is not signed by a checkpoint yet; if the gateway started less than audit.checkpoint_interval ago, wait for its first one and run this again');
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      await w.close();
    }
  });

  it('what is not a bundle is unreadable (exit 8): not a tar, a member with a path leaving the archive, a member missing', async () => {
    const dir = tempDir('vigil-bundle-edge-verify-');
    fs.writeFileSync(path.join(dir, 'junk.tar'), crypto.randomBytes(4096));
    const junk = await verifyBundleCli(dir, ['junk.tar']);
    expect(junk.code).toBe(BUNDLE_EXIT_CODES.unreadable);
    expect(junk.stderr).toMatch(/^bundle INVALID \[unreadable\]: not a readable bundle/);
    await writeTar(path.join(dir, 'escape.tar'), new Map([['../evil', Buffer.from('x')]]));
    const escape = await verifyBundleCli(dir, ['escape.tar']);
    expect(escape.code).toBe(BUNDLE_EXIT_CODES.unreadable);
    expect(escape.stderr).toContain('has an unsafe path');
    await writeTar(path.join(dir, 'partial.tar'), new Map([['events.jsonl', Buffer.from('')]]));
    const partial = await verifyBundleCli(dir, ['partial.tar']);
    expect(partial.code).toBe(BUNDLE_EXIT_CODES.unreadable);
    expect(partial.stderr).toContain('the bundle has no audit_signing.pub');
  });
});
