import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../app/main.ts';
import { searchAuditLog, verifyAuditLog } from '../../recorder/audit/index.ts';
import { openStateStore } from '../../src/store/index.ts';
import { tempDir } from '../support/tmp.ts';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await runCli(argv, out, err);
  return { code, out: o, err: e };
}

function setup() {
  const base = tempDir('vigil-cli-cert-');
  const dataDir = path.join(base, 'data');
  const configPath = path.join(base, 'vigil.yaml');
  fs.writeFileSync(
    configPath,
    [
      `data_dir: ${dataDir}`,
      'roles:',
      '  - name: oncall',
      '    targets: ["*"]',
      '    port_forwarding: true',
      '  - name: dba',
      '    targets: ["*"]',
      '',
    ].join('\n'),
  );
  return { base, dataDir, configPath };
}

const mode = (p: string) => (fs.statSync(p).mode & 0o777).toString(8);

describe('vigil cert issue / revoke', () => {
  it('writes the credential files with the right modes and records cert.issued in the audit log', async () => {
    const { base, dataDir, configPath } = setup();
    const out = path.join(base, 'out');
    const r = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'oncall,dba', '--ttl', '1h', '--source-address', '127.0.0.0/8', '--out', out, '--by', 'bob');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    for (const [f, m] of [['alice-cert.pub', '644'], ['alice', '600'], ['alice.pub', '644'], ['alice.crt', '644'], ['alice.key', '600'], ['ca.crt', '644']]) expect(mode(path.join(out, f)), f).toBe(m);
    const shown = execFileSync('ssh-keygen', ['-L', '-f', path.join(out, 'alice-cert.pub')], { encoding: 'utf8' });
    expect(shown).toMatch(/Principals: \n\s+alice\n/);
    expect(shown).toContain('permit-port-forwarding'); // oncall allows forwarding
    expect(shown).toContain('source-address 127.0.0.0/8');
    expect(execFileSync('openssl', ['verify', '-CAfile', path.join(out, 'ca.crt'), path.join(out, 'alice.crt')], { encoding: 'utf8' })).toContain(': OK');
    const serial = r.out.match(/issued certificate ([0-9a-f]{16})/)![1];

    const found = await searchAuditLog(path.join(dataDir, 'audit'), { type: 'cert.issued' });
    expect(found.records).toHaveLength(1);
    const e = found.records[0].event;
    expect(e).toMatchObject({ outcome: 'success', actor: { user: 'bob' }, target: { name: 'user/alice', protocol: 'vigil' }, source: { ip: 'local' } });
    expect(e.details).toMatchObject({ serial, user: 'alice', roles: ['oncall', 'dba'], kind: 'cert', grant_id: null });
    expect(Date.parse(e.details.not_after as string) - Date.parse(e.details.not_before as string)).toBe(3_660_000);
    expect(verifyAuditLog(path.join(dataDir, 'audit'), fs.readFileSync(path.join(dataDir, 'ca', 'audit_signing.pub'))).ok).toBe(true);
  });

  it('certifies a key given with --ssh-pubkey, no port forwarding without a role that allows it', async () => {
    const { base, configPath } = setup();
    const keyFile = path.join(base, 'id_ecdsa');
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', keyFile]);
    const out = path.join(base, 'out');
    const r = await cli('cert', 'issue', '--config', configPath, '--user', 'carol', '--roles', 'dba', '--ssh-pubkey', `${keyFile}.pub`, '--out', out);
    expect(r.code).toBe(0);
    expect(fs.existsSync(path.join(out, 'carol'))).toBe(false);
    const shown = execFileSync('ssh-keygen', ['-L', '-f', path.join(out, 'carol-cert.pub')], { encoding: 'utf8' });
    expect(shown).toContain('ecdsa-sha2-nistp256-cert-v01@openssh.com user certificate');
    expect(shown).toContain('permit-pty');
    expect(shown).not.toContain('permit-port-forwarding');
  });

  it('prints a token with --token, and revokes by serial (hex, or the decimal ssh-keygen shows) with cert.revoked', async () => {
    const { base, dataDir, configPath } = setup();
    const tok = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--token');
    expect(tok.code).toBe(0);
    expect(tok.out).toMatch(/^vigil\.[\w-]+\.[\w-]+\n$/);

    const out = path.join(base, 'out');
    const issued = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--out', out);
    const serial = issued.out.match(/issued certificate ([0-9a-f]{16})/)![1];
    const decimal = BigInt('0x' + serial).toString(10);
    const rev = await cli('cert', 'revoke', decimal, '--config', configPath, '--reason', 'laptop stolen', '--by', 'bob');
    expect(rev.err).toBe('');
    expect(rev.out).toContain(`revoked ${serial} (cert of alice)`);
    const again = await cli('cert', 'revoke', serial, '--config', configPath, '--reason', 'again');
    expect(again.code).toBe(1);

    const store = await openStateStore(dataDir);
    await store.refresh();
    expect(store.isRevoked(serial)).toBe(true);
    expect((await store.getRevocation(serial))?.reason).toBe('laptop stolen');
    await store.close();

    const events = (await searchAuditLog(path.join(dataDir, 'audit'), { type: 'cert.' })).records.map((r) => r.event);
    expect(events.map((e) => [e.type, e.outcome, e.details.kind ?? null])).toEqual([
      ['cert.issued', 'success', 'token'],
      ['cert.issued', 'success', 'cert'],
      ['cert.revoked', 'success', 'cert'],
      ['cert.revoked', 'failure', 'cert'],
    ]);
    expect(events[2]).toMatchObject({ actor: { user: 'bob' }, target: { name: `cert/${serial}`, protocol: 'vigil' }, details: { serial, reason: 'laptop stolen', user: 'alice' } });
  });

  it('--grant ties the certificate to an active grant: role added, lifetime capped, grant id in the event', async () => {
    const { base, dataDir, configPath } = setup();
    await cli('init', '--config', configPath);
    const store = await openStateStore(dataDir);
    const now = Date.now();
    const expiresAt = new Date(now + 20 * 60_000).toISOString();
    await store.createAccess({
      id: 'grant-1', user: 'alice', role: 'oncall', targets: [], reason: 'INC-4521', ttlMs: 1_200_000, state: 'active',
      createdAt: new Date(now).toISOString(), requestExpiresAt: new Date(now + 3_600_000).toISOString(), approvals: [{ by: 'bob', time: new Date(now).toISOString() }],
      breakGlass: false, grantedAt: new Date(now).toISOString(), expiresAt,
    });
    await store.close();
    const out = path.join(base, 'out');
    const r = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--ttl', '8h', '--grant', 'grant-1', '--out', out);
    expect(r.err).toBe('');
    const shown = execFileSync('ssh-keygen', ['-L', '-f', path.join(out, 'alice-cert.pub')], { encoding: 'utf8' });
    expect(shown).toContain('permit-port-forwarding'); // from the granted role
    const [e] = (await searchAuditLog(path.join(dataDir, 'audit'), { type: 'cert.issued' })).records.map((x) => x.event);
    expect(e.details).toMatchObject({ grant_id: 'grant-1', roles: ['dba', 'oncall'] });
    expect(Date.parse(e.details.not_after as string)).toBeLessThanOrEqual(Date.parse(expiresAt));
    // a grant of somebody else is refused
    const other = await cli('cert', 'issue', '--config', configPath, '--user', 'carol', '--roles', 'dba', '--grant', 'grant-1', '--out', out);
    expect(other.code).toBe(1);
    expect(other.err).toContain('VIGIL_GRANT_WRONG_USER');
  });

  it('refuses an unknown grant with a clear error and a failure event', async () => {
    const { base, dataDir, configPath } = setup();
    const r = await cli('cert', 'issue', '--config', configPath, '--user', 'alice', '--roles', 'dba', '--grant', 'nope', '--out', path.join(base, 'out'));
    expect(r.code).toBe(1);
    expect(r.err).toContain('VIGIL_GRANT_NOT_FOUND');
    const events = (await searchAuditLog(path.join(dataDir, 'audit'), { type: 'cert.issued' })).records.map((x) => x.event);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ outcome: 'failure', details: { error: 'VIGIL_GRANT_NOT_FOUND', grant_id: 'nope' } });
    expect(fs.existsSync(path.join(base, 'out'))).toBe(false);
  });

  it('vigil ca show prints the @cert-authority line for the host CA', async () => {
    const { configPath, dataDir } = setup();
    await cli('init', '--config', configPath);
    const r = await cli('ca', 'show', '--config', configPath);
    const hostCa = fs.readFileSync(path.join(dataDir, 'ca', 'host_ca.pub'), 'utf8').trim();
    expect(r.out).toContain(`@cert-authority * ${hostCa}`);
  });
});
