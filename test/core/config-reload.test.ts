import { spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { CONFIG_RELOAD_MESSAGE } from '../../src/sessions/registry.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { runCli } from '../../app/main.ts';
import { PassThrough } from 'node:stream';

/**
 * Config reload with real sessions live: stock ssh and psql keep running through a reload that adds a
 * target and removes a role; only the session whose role vanished is cut (reason config_reload, with the
 * protocol's own message); the new target works at once; a moved listener is reported, not half-applied;
 * an invalid file changes nothing and names the key; only admins may reload.
 */

let sshd: SshdHandle;
let pg: PostgresHandle;
let tg: TestGateway;
let base: string;
let configFile: string;
let alice: IssuedFiles, dave: IssuedFiles, root: IssuedFiles;
let knownHosts: string;
let doc: Record<string, any>;

beforeAll(async () => {
  [sshd, pg] = await Promise.all([startSshd(), startPostgres()]);
  base = tempDir('vigil-reload-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway(
    {
      targets: [
        { name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' },
      ],
      roles: [
        { name: 'ops', targets: ['web', 'pg'], logins: ['*'] },
        { name: 'dba', targets: ['pg'] },
        { name: 'admin' },
      ],
    },
    base,
    { configFile },
  );
  doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
  [alice, dave, root] = await Promise.all([tg.issue({ user: 'alice', roles: ['ops'] }), tg.issue({ user: 'dave', roles: ['dba'] }), tg.issue({ user: 'root', roles: ['admin'] })]);
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
});

afterAll(async () => {
  await tg?.stop();
  await Promise.all([sshd?.stop(), pg?.stop()]);
});

interface Client {
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  kill(): void;
}

function spawnClient(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Client {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {});
  const exited = new Promise<number | null>((r) => child.once('close', (code) => r(code)));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  void exited.then(() => clearTimeout(timer));
  return { stdout: () => out, stderr: () => err, exited, kill: () => child.kill('SIGKILL') };
}

const psql = (who: IssuedFiles, target: string, sql: string) =>
  spawnClient(
    'psql',
    ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql],
    clientEnv(),
  );

const ssh = (who: IssuedFiles, target: string, command: string) =>
  spawnClient('ssh', [
    '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`,
    '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes', `${target}@127.0.0.1`, command,
  ]);

/** `vigil config reload` as `who`, through the API. */
async function cliReload(who: IssuedFiles, json = false): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d) => (o += d));
  err.on('data', (d) => (e += d));
  const code = await runCli(['config', 'reload', '--api', `https://127.0.0.1:${tg.ports.api}`, '--cert', who.crt, '--key', who.key, '--ca', who.ca, ...(json ? ['--json'] : [])], out, err);
  return { code, out: o, err: e };
}

const ev = (type: string, pred: (e: AuditEvent) => boolean = () => true) => tg.waitForEvent((e) => e.type === type && pred(e), 15_000);
const liveOn = (user: string, target: string) =>
  waitFor(() => tg.gw.services.sessions.list().find((s) => s.principal.user === user && s.target.name === target), 15_000, `live ${user} session on ${target}`);
const writeConfig = (d: unknown) => fs.writeFileSync(configFile, typeof d === 'string' ? d : JSON.stringify(d, null, 2));

describe('config reload', () => {
  it('only administrators may reload', async () => {
    const r = await cliReload(alice);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/VIGIL_NOT_ADMIN/);
    expect(tg.events.some((e) => e.type === 'config.reloaded')).toBe(false);
  });

  it('adds a target and removes a role while ssh and psql sessions are live: only the session of the removed role is cut', async () => {
    // The new target is refused before the reload.
    const early = ssh(alice, 'web2', 'echo hi');
    expect(await early.exited).not.toBe(0);

    const aliceSsh = ssh(alice, 'web', 'echo started; sleep 20; echo finished');
    const alicePg = psql(alice, 'pg', "SELECT pg_sleep(4); SELECT 'alice-done'");
    const davePg = psql(dave, 'pg', 'SELECT pg_sleep(30)');
    const [sshLive, alicePgLive, davePgLive] = await Promise.all([liveOn('alice', 'web'), liveOn('alice', 'pg'), liveOn('dave', 'pg')]);
    await waitFor(() => aliceSsh.stdout().includes('started'), 30_000, 'ssh command running');

    const next = structuredClone(doc);
    next.targets.push({ ...next.targets[0], name: 'web2' });
    next.roles = next.roles.filter((r: { name: string }) => r.name !== 'dba');
    next.roles.find((r: { name: string }) => r.name === 'ops').targets.push('web2');
    writeConfig(next);

    const r = await cliReload(root, true);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.out);
    expect(report.targets).toEqual({ added: ['ssh/web2'], removed: [], changed: [] });
    expect(report.roles).toEqual({ added: [], removed: ['dba'], changed: ['ops'] });
    expect(report.sessions_cut).toEqual([{ id: davePgLive.id, user: 'dave', target: 'pg', protocol: 'postgres', reason: 'no_permission' }]);
    expect(report.restart_required).toEqual([]);

    // dave's psql is told why, in Postgres's own way, and the session end says config_reload.
    expect(await davePg.exited).not.toBe(0);
    expect(davePg.stderr()).toContain(CONFIG_RELOAD_MESSAGE);
    const daveEnd = await ev('session.end', (e) => e.session_id === davePgLive.id);
    expect(daveEnd.details.reason).toBe('config_reload');

    // The new target works for a new session at once, while alice's earlier sessions keep running.
    const added = ssh(alice, 'web2', 'echo via-web2');
    expect(await added.exited).toBe(0);
    expect(added.stdout()).toContain('via-web2');
    expect(tg.gw.services.sessions.get(sshLive.id)).toBeDefined();
    expect(await alicePg.exited).toBe(0);
    expect(alicePg.stdout()).toContain('alice-done');
    const pgEnd = await ev('session.end', (e) => e.session_id === alicePgLive.id);
    expect(pgEnd.details.reason).toBe('client_closed');
    // dave is refused from now on: his role is gone.
    const again = psql(dave, 'pg', 'SELECT 1');
    expect(await again.exited).not.toBe(0);

    const reloaded = await ev('config.reloaded');
    expect(reloaded.actor.user).toBe('root');
    expect(reloaded.details).toMatchObject({ via: 'api', file: configFile, targets: { added: ['ssh/web2'] }, roles: { removed: ['dba'] } });
    expect((reloaded.details.digest as { old: string; new: string }).old).not.toBe((reloaded.details.digest as { new: string }).new);

    aliceSsh.kill();
    await aliceSsh.exited;
    const sshEnd = await ev('session.end', (e) => e.session_id === sshLive.id);
    expect(sshEnd.details.reason).not.toBe('config_reload');
    doc = next;
  });

  it('a moved listener is reported as needing a restart and keeps listening where it was', async () => {
    const next = structuredClone(doc);
    next.postgres = { listen: '127.0.0.1:1' };
    writeConfig(next);
    const r = await cliReload(root);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/RESTART NEEDED postgres\.listen: listener postgres would move from 127\.0\.0\.1:0 to 127\.0\.0\.1:1/);
    expect(tg.gw.services.config.postgres).toMatchObject({ listen: { host: '127.0.0.1', port: 0 } });
    const still = psql(alice, 'pg', 'SELECT 7');
    expect(await still.exited).toBe(0);
    expect(still.stdout().trim()).toBe('7');
    writeConfig(doc);
  });

  it('an invalid file keeps the running configuration, names the key and records config.reload_failed', async () => {
    const bad = structuredClone(doc);
    bad.targets[1].port = 'not-a-port';
    writeConfig(bad);
    const r = await cliReload(root);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/targets\[1\]\.port/);
    expect(r.err).toMatch(/previous configuration/);
    const failed = await ev('config.reload_failed');
    expect(failed.outcome).toBe('failure');
    expect(failed.details).toMatchObject({ via: 'api', error: { code: 'VIGIL_CONFIG_INVALID', key: 'targets[1].port' } });
    // Still the config of the last good reload: web2 works, and the port is not half-applied.
    const ok = ssh(alice, 'web2', 'echo still-here');
    expect(await ok.exited).toBe(0);
    expect(tg.gw.services.targets.find('pg', 'postgres')?.port).toBe(pg.port);
    writeConfig(doc);
  });

  it('guardrails reload: a rule added applies to the next session, counters carry on, a rule removed stops blocking', async () => {
    const before = psql(alice, 'pg', 'DROP TABLE IF EXISTS reload_guarded_a');
    expect(await before.exited).toBe(0);

    const guarded = structuredClone(doc);
    guarded.guardrails = [{ name: 'no-drops', targets: ['pg'], roles: ['*'], sql: { block: ['drop'] } }];
    writeConfig(guarded);
    const r = await cliReload(root, true);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ applied: ['guardrails'], restart_required: [] });

    const blocked = psql(alice, 'pg', 'DROP TABLE IF EXISTS reload_guarded_b');
    expect(await blocked.exited).not.toBe(0);
    expect(blocked.stderr()).toContain('vigil guardrail "no-drops" refused this statement (DROP)');
    const ev1 = await ev('guardrail.blocked', (e) => e.details.rule === 'no-drops');
    expect(ev1.actor.user).toBe('alice');
    // Scraped through the API: /metrics reads the guardrails in force now, not those of its start.
    const blocks = async () => {
      const text = await new Promise<string>((resolve, reject) => {
        const req = https.request(`https://127.0.0.1:${tg.ports.api}/metrics`, { ca: fs.readFileSync(root.ca), cert: fs.readFileSync(root.crt), key: fs.readFileSync(root.key), agent: false }, (res) => {
          let b = '';
          res.on('data', (d) => (b += d));
          res.on('end', () => resolve(b));
        });
        req.on('error', reject);
        req.end();
      });
      return Number(/vigil_guardrail_decisions_total\{protocol="[^"]+",decision="block",rule="no-drops"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    expect(await blocks()).toBe(1);

    // Reloaded again with a second rule: the decision counters of the first instance carry on.
    const two = structuredClone(guarded);
    two.guardrails.push({ name: 'no-truncate', targets: ['pg'], roles: ['*'], sql: { block: ['truncate'] } });
    writeConfig(two);
    expect((await cliReload(root)).code).toBe(0);
    const again = psql(alice, 'pg', 'DROP TABLE IF EXISTS reload_guarded_c');
    expect(await again.exited).not.toBe(0);
    expect(await blocks()).toBe(2);

    // Removed: the next session may drop again.
    writeConfig(doc);
    expect((await cliReload(root)).code).toBe(0);
    expect(tg.gw.services.guardrails).toBeUndefined();
    const after = psql(alice, 'pg', 'DROP TABLE IF EXISTS reload_guarded_d');
    expect(await after.exited).toBe(0);
  });
});
