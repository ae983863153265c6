import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { freePort, tempDir, waitFor } from '../support/tmp.ts';

/**
 * README "Quickstart" walked the way a newcomer does it: every ```sh block of that section, taken from
 * README.md itself and run by bash in order, in a fresh HOME (no ~/.ssh, no ~/.vigil) and a fresh working
 * directory, against a real OpenSSH sshd and a real PostgreSQL 15. If a step of the README is broken, or the
 * README drifts from what this test knows about it, this fails.
 *
 * The only substitutions are what a test cannot share with the machine: ports (sshd 22, PostgreSQL 5432 and
 * the gateway's 2222/6432/3307/8443 become random loopback ports), `sudo -u postgres` (the test's PostgreSQL
 * superuser over TCP), ssh's own known_hosts location (OpenSSH takes ~ from the passwd entry, not $HOME),
 * the repository-root commands `npx vigil` / `npm start --` (run as `node bin/vigil.js [serve]` from the
 * temp working dir), and SESSION_ID (an id the user would copy from `vigil sessions list`).
 */

const ROOT = path.resolve(import.meta.dirname, '../..');
const VIGIL_BIN = path.join(ROOT, 'bin/vigil.js');
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The ```sh blocks of the README's Quickstart section, in order. */
function quickstartBlocks(): string[] {
  const start = README.indexOf('## Quickstart');
  expect(start, 'README has a "## Quickstart" section').toBeGreaterThanOrEqual(0);
  const end = README.indexOf('\n## ', start + 1);
  const section = README.slice(start, end < 0 ? undefined : end);
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
}

/** Replace `from` (string: every occurrence) and insist it was there: a README that changed fails here. */
function sub(block: string, from: string | RegExp, to: string): string {
  const found = typeof from === 'string' ? block.includes(from) : from.test(block);
  expect(found, `README quickstart block still contains ${String(from)}:\n${block}`).toBe(true);
  return typeof from === 'string' ? block.split(from).join(to) : block.replace(from, to);
}

let sshd: SshdHandle;
let pg: PostgresHandle;
let home: string;
let work: string;
let blocks: string[];
const ports: Record<'ssh' | 'postgres' | 'mysql' | 'api', number> = { ssh: 0, postgres: 0, mysql: 0, api: 0 };
const user = os.userInfo().username;

/** Shell functions that stand in for what a test cannot share with the machine (see above). */
function prelude(): string {
  return [
    'set -euo pipefail',
    `export HOME=${JSON.stringify(home)} VIGIL_FROM_SOURCE=1`,
    'unset USER PG_LOCAL_PASSWORD PGHOST PGPORT PGUSER PGDATABASE PGPASSWORD VIGIL_CONFIG VIGIL_LOG_JSON',
    `npx() { if [ "$1" = vigil ]; then shift; node ${JSON.stringify(VIGIL_BIN)} "$@"; else echo "quickstart test: unexpected npx $*" >&2; return 127; fi; }`,
    // package.json: "start": "tsx app/main.ts serve" (checked below); exec, so that Ctrl-C and SIGHUP reach the gateway as they do in a terminal.
    `npm() { if [ "$1" = start ] && [ "$2" = -- ]; then shift 2; exec node ${JSON.stringify(VIGIL_BIN)} serve "$@"; else echo "quickstart test: unexpected npm $*" >&2; return 127; fi; }`,
    `sudo() { if [ "$1" = -u ] && [ "$2" = postgres ]; then shift 2; PGHOST=127.0.0.1 PGPORT=${pg.port} PGUSER=${pg.superuser} PGSSLMODE=disable "$@"; else echo "quickstart test: unexpected sudo $*" >&2; return 127; fi; }`,
    `ssh-keyscan() { command ssh-keyscan -p ${sshd.port} "$@"; }`,
    'ssh() { command ssh -F /dev/null -o UserKnownHostsFile="$HOME/.ssh/known_hosts" -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR "$@"; }',
    '',
  ].join('\n');
}

interface Run {
  code: number | null;
  out: string;
}

/**
 * Run a README block in bash (stdin /dev/null, like a terminal the user does not type into). As in a
 * terminal, a failing line does not stop the next one; each is reported (`quickstart-failed[CODE]: LINE`).
 */
function runBlock(block: string, timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    // $LINENO, not $BASH_COMMAND: after a shell function (npx below) the latter names the function's last command.
    const head = prelude().replace('set -euo pipefail', `set -uo pipefail; trap 'echo "quickstart-failed[$?]@$LINENO" >&2' ERR`);
    const offset = head.split('\n').length - 1;
    const lines = block.split('\n');
    const script = head + block;
    const child = spawn('bash', ['-c', script], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`README block timed out after ${timeoutMs} ms:\n${block}\n--- output:\n${out}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out: out.replace(/^quickstart-failed\[(\d+)\]@(\d+)$/gm, (_, c: string, n: string) => `quickstart-failed[${c}]: ${lines[Number(n) - offset - 1]?.replace(/\s+#.*$/, '')}`) });
    });
  });
}

/** Every line of the block succeeds, except those the README says exit non-zero (`allowed`, matched against `[CODE]: LINE`). */
async function ok(block: string, allowed: RegExp[] = []): Promise<string> {
  const r = await runBlock(block);
  const failed = [...r.out.matchAll(/^quickstart-failed(\[\d+\]: .*)$/gm)].map((m) => m[1]).filter((f) => !allowed.some((a) => a.test(f)));
  expect(failed, `README block has failing lines:\n${block}\n--- output:\n${r.out}`).toEqual([]);
  return r.out;
}

/** README: `audit verify` exits 3 without a witness (intact and signed, completeness not proven). */
const VERIFY_WITHOUT_WITNESS = /^\[3\]: npx vigil audit verify --config vigil\.yaml$/;

/** The gateway's terminal: a block that ends in `npm start`, left running. */
interface Gateway {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | string | null>;
}
let gateway: Gateway | undefined;

async function startGatewayBlock(block: string): Promise<Gateway> {
  expect(block.trimEnd().split('\n').pop()).toMatch(/^npm start -- --config vigil\.yaml/);
  const child = spawn('bash', ['-c', prelude() + block], { cwd: work, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  let gone: number | string | null | undefined;
  void exited.then((c) => (gone = c));
  await waitFor(
    () => {
      if (gone !== undefined) throw new Error(`the gateway's terminal ended (${gone}) before the gateway ran:\n${out}`);
      return out.includes('vigil gateway running');
    },
    60_000,
    'vigil gateway running',
  );
  return { child, output: () => out, exited };
}

/** Ctrl-C in the gateway's terminal. */
async function stopGateway(): Promise<void> {
  if (!gateway) return;
  const g = gateway;
  gateway = undefined;
  if (g.child.exitCode === null && g.child.signalCode === null) process.kill(-g.child.pid!, 'SIGINT');
  await g.exited;
}

beforeAll(async () => {
  home = tempDir('vigil-qs-home-');
  work = tempDir('vigil-qs-work-');
  [sshd, pg] = await Promise.all([
    // This sshd trusts what the README puts in ~/.ssh/authorized_keys, and nothing else.
    startSshd({ overrides: { AuthorizedKeysFile: path.join(home, '.ssh/authorized_keys') } }),
    startPostgres(),
  ]);
  for (const k of Object.keys(ports) as (keyof typeof ports)[]) ports[k] = await freePort();
  blocks = quickstartBlocks();
}, 120_000);

afterAll(async () => {
  await stopGateway().catch(() => {});
  await Promise.all([sshd?.stop(), pg?.stop()]);
  for (const d of [home, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

// Each step starts several CLI processes (about 1.5 s each on an idle 2-core machine, more under load).
describe('README quickstart, as written', { timeout: 120_000 }, () => {
  it('has the blocks this test walks, and `npm start` is `vigil serve`', () => {
    expect(blocks).toHaveLength(9);
    expect(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start).toBe('tsx app/main.ts serve');
  });

  it('1. init, the backend key, ~/.ssh created and authorized', async () => {
    expect(fs.existsSync(path.join(home, '.ssh'))).toBe(false);
    await ok(blocks[0]);
    expect(fs.statSync(path.join(work, 'data')).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(home, '.ssh')).mode & 0o777).toBe(0o700);
    const pub = fs.readFileSync(path.join(work, 'data/backend_key.pub'), 'utf8').trim();
    expect(fs.readFileSync(path.join(home, '.ssh/authorized_keys'), 'utf8')).toContain(pub);
  });

  it('2. vigil.yaml with the pinned host key; config check', async () => {
    let b = sub(blocks[1], 'port: 22\n', `port: ${sshd.port}\n`);
    // The gateway's listeners on random ports instead of the defaults 2222/6432/3307/8443.
    b = sub(b, 'data_dir: ./data\n', `data_dir: ./data\n${(Object.keys(ports) as (keyof typeof ports)[]).map((k) => `${k}:\n  listen: 127.0.0.1:${ports[k]}\n`).join('')}`);
    const out = await ok(b);
    expect(out).toContain('config ok');
    expect(out).not.toContain('no host key');
    const yaml = fs.readFileSync(path.join(work, 'vigil.yaml'), 'utf8');
    expect(yaml).toContain(`host_key: "${sshd.hostKeyPub.split(' ').slice(0, 2).join(' ')}`);
    expect(yaml).toContain(`default_login: ${user}\n`);
  });

  it('3. doctor passes, then the gateway starts', async () => {
    gateway = await startGatewayBlock(blocks[2]);
    const out = gateway.output();
    expect(out).toMatch(/all \d+ checks passed/);
    expect(out).toMatch(/OK +backend +target local \(ssh 127\.0\.0\.1:\d+\): answers: SSH-2\.0-OpenSSH/);
  });

  it('4. cert issue, ssh-keygen -L, known_hosts', async () => {
    const out = await ok(blocks[3]);
    expect(out).toMatch(/Type: ssh-ed25519-cert-v01@openssh.com user certificate/);
    for (const f of ['alice', 'alice-cert.pub', 'alice.crt', 'alice.key', 'ca.crt']) expect(fs.existsSync(path.join(home, '.vigil', f)), f).toBe(true);
    expect(fs.readFileSync(path.join(home, '.ssh/known_hosts'), 'utf8')).toContain(`[localhost]:${ports.ssh} ssh-ed25519 `);
  });

  it('5. stock ssh through vigil, then audit search, sessions, replay, verify', async () => {
    const out = await ok(sub(blocks[4], '-p 2222 ', `-p ${ports.ssh} `));
    expect(out).toContain(os.hostname());
    // SESSION_ID: what the user copies from `vigil sessions list`.
    const { runCliCaptured } = await import('../support/cli.ts');
    const list = await runCliCaptured(['sessions', 'list', '--config', path.join(work, 'vigil.yaml'), '--json']);
    expect(list.code, list.err).toBe(0);
    const ids = list.out.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
    expect(ids.length).toBeGreaterThanOrEqual(2);
    const audit = await ok(sub(blocks[5], 'SESSION_ID', ids[0]), [VERIFY_WITHOUT_WITNESS]);
    expect(audit).toMatch(/auth\.success/);
    expect(audit).toMatch(/ssh\.exec.*uname -a/);
    expect(audit).toContain(ids[0]);
    expect(audit).toMatch(/audit log intact and signed up to seq \d+: completeness NOT proven \(no witness given\)/);
  });

  it('6. PostgreSQL: role, database, target, PG_LOCAL_PASSWORD; restart; stock psql; db.query recorded', async () => {
    await stopGateway();
    gateway = await startGatewayBlock(sub(blocks[6], 'port: 5432\n', `port: ${pg.port}\n`));
    const gwOut = gateway.output();
    expect(gwOut).toMatch(/OK +secret +target pg-local password: environment variable PG_LOCAL_PASSWORD is set/);
    expect(gwOut).toMatch(/OK +backend +target pg-local \(postgres 127\.0\.0\.1:\d+\): PostgreSQL answers/);
    expect(gwOut).toMatch(/all \d+ checks passed/);
    const out = await ok(sub(blocks[7], 'port=6432 ', `port=${ports.postgres} `), [VERIFY_WITHOUT_WITNESS]);
    expect(out).toMatch(/^\s*hello\s*$/m);
    expect(out).toMatch(/db\.query.*alice.*pg-local|db\.query.*pg-local.*alice/);
    expect(out).toMatch(/INSERT INTO notes/);
    expect(out).toMatch(/audit log intact and signed up to seq \d+: completeness NOT proven \(no witness given\)/);
    expect(pg.psql("SELECT count(*) FROM notes", 'demo')).toBe('1');
  });

  it('later changes: kill -HUP with the pid from "vigil gateway running (pid N)", and vigil config reload as admin', async () => {
    const pid = Number(/vigil gateway running \(pid (\d+)\)/.exec(gateway!.output())?.[1]);
    // The pid the README tells the user to signal is the gateway itself (npm start: not npm's, not tsx's).
    expect(pid).toBe(gateway!.child.pid);
    const reloads = () => gateway!.output().split('\n').filter((l) => l.includes('configuration reloaded')).length;
    expect(reloads()).toBe(0);
    const out = await ok(sub(sub(blocks[8], 'kill -HUP PID', `kill -HUP ${pid}`), 'https://127.0.0.1:8443 ', `https://127.0.0.1:${ports.api} `));
    expect(out).toMatch(/configuration reloaded from .*vigil\.yaml/);
    await waitFor(() => reloads() >= 2, 15_000, 'two reloads logged (SIGHUP and the API)');
    expect(gateway!.child.exitCode).toBeNull();
  });
});
