import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { searchAuditLog } from '../../recorder/audit/index.ts';
import { dataPaths } from '../../src/data-dir.ts';
import type { ReportModel } from '../../recorder/reports/model.ts';

/**
 * What the access report counts as a change, against real sessions: stock ssh through the gateway to a real
 * sshd whose ForceCommand only writes each command down (so a refused `rm -rf /` could never run), with a
 * guardrail refusing it; stock psql to a real PostgreSQL, with a guardrail refusing DROP and a large object
 * imported with `\lo_import` (libpq writes it with fastpath FunctionCall messages: no SQL text at all).
 */

let sshd: SshdHandle;
let pg: PostgresHandle;
let tg: TestGateway;
let base: string;
let olga: IssuedFiles;
let knownHosts: string;
let reachedLog: string;
let since: string;

function run(cmd: string, args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: clientEnv() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.stdin.on('error', () => {});
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

const ssh = (who: IssuedFiles, command: string) =>
  run('ssh', [
    '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
    `${sshd.user}@web1@127.0.0.1`, command,
  ]);

const psql = (who: IssuedFiles, script: string) =>
  run('psql', ['-X', '-At', '-v', 'ON_ERROR_STOP=0', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg-prod user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-f', '-'], script);

const reached = () => (fs.existsSync(reachedLog) ? fs.readFileSync(reachedLog, 'utf8').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'base64').toString('utf8')) : []);

beforeAll(async () => {
  base = tempDir('vigil-report-refusals-');
  fs.chmodSync(base, 0o755);
  reachedLog = path.join(base, 'reached.log');
  const wrapper = path.join(base, 'log-only.sh');
  fs.writeFileSync(wrapper, ['#!/bin/sh', `printf '%s' "$SSH_ORIGINAL_COMMAND" | base64 -w0 >> ${reachedLog}`, `echo >> ${reachedLog}`, 'echo reached-target', ''].join('\n'), { mode: 0o755 });
  [sshd, pg] = await Promise.all([startSshd({ overrides: { ForceCommand: wrapper } }), startPostgres()]);
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      targets: [
        { name: 'web1', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
        { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' },
      ],
      roles: [{ name: 'oncall', targets: ['*'], logins: ['*'], databases: ['app'] }],
      guardrails: [
        { name: 'careful-shell', targets: ['web1'], roles: ['oncall'], ssh: { block_commands: ['rm -rf /'] } },
        { name: 'no-drop', targets: ['pg-prod'], roles: ['oncall'], sql: { block: ['drop'] } },
      ],
    },
    base,
  );
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
  olga = await tg.issue({ user: 'olga', roles: ['oncall'] });
  since = new Date(Date.now() - 1000).toISOString();
}, 120_000);

afterAll(async () => {
  await tg?.stop().catch(() => {});
  await Promise.all([sshd?.stop(), pg?.stop()]);
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

describe('vigil report access: refusals are denied, never changes; fastpath calls are listed', () => {
  it('a guardrail-refused exec and statement, an allowed change, and lo_import through fastpath', async () => {
    const refused = await ssh(olga, 'rm -rf /');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('guardrail "careful-shell" refused this command');
    const allowed = await ssh(olga, 'touch /srv/vigil-report-marker');
    expect(allowed.stdout, allowed.stderr).toContain('reached-target');
    expect(reached()).toEqual(['touch /srv/vigil-report-marker']);

    const blob = path.join(base, 'blob.bin');
    fs.writeFileSync(blob, 'large object bytes\n'.repeat(100));
    fs.chmodSync(blob, 0o644);
    const q = await psql(olga, `DROP TABLE IF EXISTS vigil_report_nothing;\n\\lo_import ${blob}\n`);
    expect(q.stderr).toContain('guardrail "no-drop" refused this statement');
    expect(q.stdout, q.stderr).toMatch(/^lo_import \d+/m);
    for (const p of ['ssh', 'postgres']) await tg.waitForEvent((e) => e.type === 'session.end' && e.target?.protocol === p, 30_000);
    await tg.stop();

    const audit = dataPaths(tg.dataDir).audit;
    const all = (await searchAuditLog(audit, {})).records.map((r) => r.event);
    const of = (pred: (e: AuditEvent) => boolean) => all.filter(pred);
    // What the gateway wrote: the refusal twice (the guardrail event and the exec it refused), and one
    // db.query per fastpath call, with the function's oid and no SQL.
    expect(of((e) => e.type === 'guardrail.blocked')).toHaveLength(2);
    expect(of((e) => e.type === 'ssh.exec' && e.details?.command === 'rm -rf /')).toEqual([expect.objectContaining({ outcome: 'failure', details: expect.objectContaining({ error: 'refused by guardrail careful-shell' }) })]);
    const calls = of((e) => e.type === 'db.query' && e.details?.protocol === 'function_call');
    expect(calls.length).toBeGreaterThanOrEqual(3); // lo_creat, lo_open, lowrite, lo_close…
    for (const c of calls) expect(c.details).toMatchObject({ function_oid: expect.any(Number) });
    expect(calls.every((c) => c.details?.sql === undefined)).toBe(true);

    const r = await runCliCaptured(['report', 'access', '--data', tg.dataDir, '--since', since, '--format', 'json']);
    expect(r.code, r.err).toBe(0);
    const m = JSON.parse(r.out) as ReportModel;

    // The refused exec is no change; the allowed one is.
    expect(m.changes.map((c) => c.text)).toEqual(['touch /srv/vigil-report-marker']);
    expect(m.summary.changes).toBe(1);
    // Each refusal is denied exactly once (its guardrail event), with the rule and what was refused.
    const refusedRows = m.denied.filter((d) => /guardrail/.test(d.reason));
    expect(refusedRows.map((d) => [d.type, d.reason.match(/guardrail (\S+)/)?.[1]])).toEqual([
      ['guardrail.blocked', 'careful-shell'],
      ['guardrail.blocked', 'no-drop'],
    ]);
    expect(refusedRows[0].reason).toContain('rm -rf /');
    expect(m.denied.filter((d) => d.reason.includes('DROP TABLE'))).toHaveLength(1);
    expect(m.summary.denied_or_failed).toBeGreaterThanOrEqual(2);

    // Every fastpath call is listed as unclassified, named by its function oid: none is dropped.
    const listed = m.unclassified.filter((u) => u.text.startsWith('function call (oid '));
    expect(listed.map((u) => u.text)).toEqual(calls.map((c) => `function call (oid ${String(c.details!.function_oid)})`));
    expect(m.summary.unclassified).toBeGreaterThanOrEqual(calls.length);
  }, 120_000);
});
