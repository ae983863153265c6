import crypto from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { CA_FILES, initIdentity } from '../../src/identity/index.ts';
import { parseCertificateLine } from '../../src/identity/openssh-cert.ts';
import { tempDir } from '../support/tmp.ts';

const PRIVATE = [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey, CA_FILES.x509CaKey, CA_FILES.serverKey, CA_FILES.auditKey, CA_FILES.tokenKey];

function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of fs.readdirSync(dir).sort()) {
    const st = fs.statSync(path.join(dir, f));
    out[f] = `${(st.mode & 0o777).toString(8)} ${st.mtimeMs} ${crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, f))).digest('hex')}`;
  }
  return out;
}

function setup(doc: Record<string, unknown> = {}) {
  const base = tempDir('vigil-ca-');
  const dataDir = path.join(base, 'data');
  return { base, dataDir, caDir: path.join(dataDir, 'ca'), config: parseConfig({ data_dir: dataDir, ...doc }, base) };
}

describe('initIdentity', () => {
  it('creates every key with private files 0600 in a 0700 directory, and a second run changes nothing', async () => {
    const { dataDir, caDir, config } = setup();
    expect(await initIdentity(dataDir, config)).toBe(true);
    expect(fs.statSync(caDir).mode & 0o777).toBe(0o700);
    for (const f of PRIVATE) expect((fs.statSync(path.join(caDir, f)).mode & 0o777).toString(8), f).toBe('600');
    const before = snapshot(caDir);
    expect(Object.keys(before)).toEqual(
      [...Object.values(CA_FILES), `${CA_FILES.userCa}.pub`, `${CA_FILES.hostCa}.pub`, `${CA_FILES.hostKey}.pub`].sort(),
    );
    expect(await initIdentity(dataDir, config)).toBe(false);
    expect(snapshot(caDir)).toEqual(before);
  });

  it('writes the audit signing key as PKCS#8 / SPKI Ed25519 PEM at the documented path', async () => {
    const { dataDir, caDir, config } = setup();
    await initIdentity(dataDir, config);
    const key = crypto.createPrivateKey(fs.readFileSync(path.join(caDir, 'audit_signing.key')));
    const pub = crypto.createPublicKey(fs.readFileSync(path.join(caDir, 'audit_signing.pub')));
    expect(key.asymmetricKeyType).toBe('ed25519');
    const sig = crypto.sign(null, Buffer.from('checkpoint'), key);
    expect(crypto.verify(null, Buffer.from('checkpoint'), pub, sig)).toBe(true);
    expect(fs.readFileSync(path.join(caDir, 'audit_signing.key'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('CA private keys are usable by the stock tools (ssh-keygen reads the OpenSSH keys)', async () => {
    const { dataDir, caDir, config } = setup();
    await initIdentity(dataDir, config);
    for (const f of [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey]) {
      const derived = execFileSync('ssh-keygen', ['-y', '-f', path.join(caDir, f)], { encoding: 'utf8' }).split(' ').slice(0, 2).join(' ');
      expect(fs.readFileSync(path.join(caDir, `${f}.pub`), 'utf8').startsWith(derived)).toBe(true);
    }
    const hostCert = execFileSync('ssh-keygen', ['-L', '-f', path.join(caDir, CA_FILES.hostCert)], { encoding: 'utf8' });
    expect(hostCert).toContain('host certificate');
    expect(hostCert).toMatch(/Principals: \n\s+localhost\n\s+127\.0\.0\.1\n/);
  });

  it('re-issues the server and host certificates when the SANs change, keeping every CA key', async () => {
    const { dataDir, caDir, config, base } = setup();
    await initIdentity(dataDir, config);
    const before = snapshot(caDir);
    const changed = parseConfig({ data_dir: dataDir, gateway: { tls_sans: ['gw.example.com', '10.0.0.5', '::1'] } }, base);
    expect(await initIdentity(dataDir, changed)).toBe(false);
    const after = snapshot(caDir);
    for (const f of [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey, CA_FILES.x509CaKey, CA_FILES.x509CaCert, CA_FILES.auditKey, CA_FILES.tokenKey]) expect(after[f], f).toBe(before[f]);
    expect(after[CA_FILES.serverCert]).not.toBe(before[CA_FILES.serverCert]);
    const san = new crypto.X509Certificate(fs.readFileSync(path.join(caDir, CA_FILES.serverCert))).subjectAltName;
    expect(san).toBe('DNS:gw.example.com, IP Address:10.0.0.5, IP Address:0:0:0:0:0:0:0:1');
    expect(parseCertificateLine(fs.readFileSync(path.join(caDir, CA_FILES.hostCert), 'utf8')).principals).toEqual(['gw.example.com', '10.0.0.5', '::1']);
    // and stable again afterwards
    const again = snapshot(caDir);
    await initIdentity(dataDir, changed);
    expect(snapshot(caDir)).toEqual(again);
    // a process with another config that asks not to touch derived material leaves it alone
    await initIdentity(dataDir, config, { updateDerived: false });
    expect(snapshot(caDir)).toEqual(again);
  });

  it('two processes racing on first start end up with one consistent CA', async () => {
    const { dataDir, caDir, base } = setup();
    const script = path.join(base, 'init.mts');
    const root = path.resolve(import.meta.dirname, '../..');
    fs.writeFileSync(
      script,
      `import { parseConfig } from '${root}/app/config.ts';\n` +
        `import { initIdentity } from '${root}/src/identity/index.ts';\n` +
        `const created = await initIdentity(${JSON.stringify(dataDir)}, parseConfig({ data_dir: ${JSON.stringify(dataDir)} }, ${JSON.stringify(base)}));\n` +
        `process.stdout.write(String(created));\n`,
    );
    const run = () =>
      new Promise<string>((resolve, reject) => {
        const p = spawn(path.join(root, 'node_modules/.bin/tsx'), [script], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        p.stdout.on('data', (d) => (out += d));
        p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`init exited ${code}`))));
      });
    const results = await Promise.all([run(), run(), run()]);
    expect(results.filter((r) => r === 'true').length).toBe(1);
    // the server certificate and host certificate belong to the CA that stayed
    const ca = new crypto.X509Certificate(fs.readFileSync(path.join(caDir, CA_FILES.x509CaCert)));
    expect(new crypto.X509Certificate(fs.readFileSync(path.join(caDir, CA_FILES.serverCert))).verify(ca.publicKey)).toBe(true);
    const hostCaFp = execFileSync('ssh-keygen', ['-l', '-f', path.join(caDir, `${CA_FILES.hostCa}.pub`)], { encoding: 'utf8' }).split(' ')[1];
    expect(execFileSync('ssh-keygen', ['-L', '-f', path.join(caDir, CA_FILES.hostCert)], { encoding: 'utf8' })).toContain(hostCaFp);
    expect(fs.readdirSync(dataDir).filter((f) => f.startsWith('.ca-new-'))).toEqual([]);
  });

  it('fills an existing empty ca/ directory (a mounted volume, say)', async () => {
    const { dataDir, caDir, config } = setup();
    fs.mkdirSync(caDir, { recursive: true, mode: 0o755 });
    expect(await initIdentity(dataDir, config)).toBe(true);
    expect(fs.existsSync(path.join(caDir, CA_FILES.userCa))).toBe(true);
    expect(fs.statSync(caDir).mode & 0o777).toBe(0o700);
  });

  it('refuses to silently replace a CA whose keys went missing', async () => {
    const { dataDir, caDir, config } = setup();
    await initIdentity(dataDir, config);
    fs.rmSync(path.join(caDir, CA_FILES.x509CaKey));
    await expect(initIdentity(dataDir, config)).rejects.toMatchObject({ code: 'VIGIL_CA_INCOMPLETE' });
  });

  it('tightens a private key file that became group/world readable', async () => {
    const { dataDir, caDir, config } = setup();
    await initIdentity(dataDir, config);
    fs.chmodSync(path.join(caDir, CA_FILES.userCa), 0o644);
    await initIdentity(dataDir, config);
    expect(fs.statSync(path.join(caDir, CA_FILES.userCa)).mode & 0o777).toBe(0o600);
  });
});
