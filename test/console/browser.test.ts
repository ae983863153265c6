import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import ssh2 from 'ssh2';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { ensureConsole } from '../support/console.ts';

/**
 * The console in a real browser (Debian chromium, headless, driven by playwright-core) against a real
 * gateway, sshd and PostgreSQL with stock clients: sign in with a client certificate, replay an ssh
 * session and see the typed command on the terminal, read a psql session's statements, approve a request
 * as its approver and use psql under the grant, and the refusals (wrong role, no CSRF token). Screenshots
 * go to test-artifacts/.
 */

const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts');
let sshd: SshdHandle;
let pg: PostgresHandle;
let tg: TestGateway;
let base: string;
let browser: Browser;
let alice: IssuedFiles, bob: IssuedFiles, audrey: IssuedFiles, ada: IssuedFiles;
let knownHosts: string;
const cspViolations: string[] = [];

beforeAll(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const dir = tempDir('vigil-console-e2e-');
  [sshd, pg] = await Promise.all([startSshd(), startPostgres(), ensureConsole()]);
  tg = await startTestGateway(
    {
      targets: [
        { name: 'web-dev', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub, labels: { env: 'dev' } },
        { name: 'pg-dev', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'dev' } },
        { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'prod' } },
      ],
      roles: [
        { name: 'engineer', target_labels: { env: 'dev' }, logins: ['*'] },
        { name: 'prod-access', target_labels: { env: 'prod' }, approvers: ['sre-lead'], max_ttl: '1h' },
        { name: 'sre-lead' },
        { name: 'auditor' },
        { name: 'admin' },
      ],
    },
    dir,
  );
  base = `https://127.0.0.1:${tg.ports.api}`;
  [alice, bob, audrey, ada] = await Promise.all([
    tg.issue({ user: 'alice', roles: ['engineer'] }),
    tg.issue({ user: 'bob', roles: ['sre-lead'] }),
    tg.issue({ user: 'audrey', roles: ['auditor'] }),
    tg.issue({ user: 'ada', roles: ['admin'] }),
  ]);
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(dir, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
});

afterAll(async () => {
  await browser?.close();
  await tg?.stop();
  await Promise.all([sshd?.stop(), pg?.stop()]);
});

// ---- clients ------------------------------------------------------------------------------------------

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: (w: NodeJS.WritableStream, out: () => string) => Promise<void> } = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<number | null>((r) => child.once('close', (code) => (clearTimeout(timer), r(code))));
  if (opts.input) void opts.input(child.stdin, () => out).catch(() => child.kill('SIGKILL'));
  else child.stdin.end();
  return { exited, out: () => out, err: () => err };
}

const psql = (who: IssuedFiles, target: string, sql: string) =>
  run('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=1', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql], { env: clientEnv() });

const sshArgs = (who: IssuedFiles, target: string) => ['-tt', '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes', `${target}@127.0.0.1`];

async function typeLine(w: NodeJS.WritableStream, out: () => string, line: string) {
  await waitFor(() => /[$#] ?$/.test(out().trimEnd() + ' ') || out().length > 0, 15_000, 'shell prompt');
  await new Promise((r) => setTimeout(r, 300));
  for (const ch of line + '\r') {
    w.write(ch);
    await new Promise((r) => setTimeout(r, 15));
  }
}

/** Stock `ssh -tt` into a shell: type a command, wait for its output, exit. */
const sshTyping = (who: IssuedFiles, target: string, line: string, expectOut: string) =>
  run('ssh', sshArgs(who, target), {
    input: async (w, out) => {
      await typeLine(w, out, line);
      await waitFor(() => out().includes(expectOut), 15_000, `output ${expectOut}`);
      w.write('exit\r');
    },
  });

/** Stock `ssh -tt` into a shell that types `line` only when `go` resolves, then stays until it is ended. */
const sshHeld = (who: IssuedFiles, target: string, go: Promise<void>, line: string) =>
  run('ssh', sshArgs(who, target), {
    input: async (w, out) => {
      await go;
      await typeLine(w, out, line);
    },
  });

function apiPost(p: string, who: IssuedFiles, body: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = https.request(`${base}${p}`, { method: 'POST', agent: false, ca: who.creds.caCertificate, cert: who.creds.x509Certificate, key: who.creds.x509PrivateKey, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

// ---- browser ------------------------------------------------------------------------------------------

async function signedIn(who: IssuedFiles, viewport = { width: 1280, height: 800 }): Promise<{ ctx: BrowserContext; page: Page }> {
  const ctx = await browser.newContext({
    viewport,
    ignoreHTTPSErrors: true,
    clientCertificates: [{ origin: base, cert: Buffer.from(who.creds.x509Certificate), key: Buffer.from(who.creds.x509PrivateKey) }],
  });
  const page = await ctx.newPage();
  page.on('console', (m) => {
    if (/Content.Security.Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  await page.goto(`${base}/console/`);
  await page.getByRole('button', { name: 'Sign in with client certificate' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
  return { ctx, page };
}

describe('web console in Chromium', () => {
  it('an auditor finds an ssh session recorded from stock ssh, replays it and sees the typed command', async () => {
    const s = sshTyping(alice, 'web-dev', 'echo vigil-typed-4711', 'vigil-typed-4711\r\n');
    expect(await s.exited).toBe(0);
    const start = await tg.waitForEvent((e) => e.type === 'session.start' && e.target.name === 'web-dev');
    await tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);

    const { ctx, page } = await signedIn(audrey);
    await page.getByLabel('Protocol').selectOption('ssh');
    await page.getByRole('button', { name: 'Filter' }).click();
    const link = page.getByRole('link', { name: `Session ${start.session_id} of alice on web-dev` });
    await link.focus();
    await page.keyboard.press('Enter'); // keyboard navigation
    await page.getByRole('heading', { name: `Session ${start.session_id}` }).waitFor();
    await page.getByLabel('Speed').selectOption('8');
    const player = page.locator('.ap-player').first();
    await player.waitFor();
    await player.click(); // starts playback
    await expect.poll(() => page.locator('.ap-term').first().innerText(), { timeout: 20_000 }).toContain('echo vigil-typed-4711');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-ssh-replay.png'), fullPage: true });
    // The view of the recording is on the record, with who watched.
    await tg.waitForEvent((e) => e.type === 'console.view' && e.details.view === 'recording' && e.session_id === start.session_id && e.actor.user === 'audrey');
    await ctx.close();
  });

  it('a psql session shows its statements with rows and outcome', async () => {
    const q = psql(alice, 'pg-dev', 'SELECT 40 + 2 AS vigil_console_answer');
    expect(await q.exited).toBe(0);
    expect(q.out().trim()).toBe('42');
    const start = await tg.waitForEvent((e) => e.type === 'session.start' && e.target.name === 'pg-dev');
    await tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);

    const { ctx, page } = await signedIn(audrey, { width: 390, height: 844 }); // phone width
    await page.getByLabel('User').fill('alice');
    await page.getByLabel('Protocol').selectOption('postgres');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.getByRole('link', { name: `Session ${start.session_id} of alice on pg-dev` }).click();
    const row = page.locator('table.statements tbody tr', { hasText: 'vigil_console_answer' });
    await row.waitFor();
    const cells = await row.locator('td').allInnerTexts();
    expect(cells[1]).toBe('SELECT 40 + 2 AS vigil_console_answer');
    expect(cells[3]).toBe('success');
    expect(cells[4]).toBe('1');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-psql-phone.png'), fullPage: true });
    await ctx.close();
  });

  it('an approver approves a pending request in the console, then psql works under the grant', async () => {
    const before = psql(alice, 'pg-prod', 'SELECT 1');
    expect(await before.exited).not.toBe(0);
    const r = await apiPost('/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-900 console test', ttl: '30m' });
    expect(r.status).toBe(201);
    const id = r.body.request.id as string;

    // An auditor is no approver: no decision controls, and a decision forged with the right CSRF token
    // is still refused by the access service (and recorded).
    const aud = await signedIn(audrey);
    await aud.page.getByRole('link', { name: 'Access requests' }).click();
    const item = aud.page.getByRole('listitem', { name: `Request ${id} by alice` });
    await item.getByText('You do not approve requests for this role.').waitFor();
    expect(await item.getByRole('button', { name: 'Approve' }).count()).toBe(0);
    const forged = await aud.page.evaluate(async (rid) => {
      const me = (await (await fetch('/console/api/me')).json()) as { csrf: string };
      const res = await fetch(`/console/api/access/requests/${rid}/approve`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-vigil-csrf': me.csrf }, body: '{}' });
      return { status: res.status, body: await res.json() };
    }, id);
    expect(forged.status).toBe(403);
    await tg.waitForEvent((e) => e.type === 'access.refused' && e.actor.user === 'audrey' && e.source.via === 'console');
    await aud.ctx.close();

    // The approver, keyboard only: comment, then Approve.
    const { ctx, page } = await signedIn(bob);
    await page.getByRole('link', { name: 'Access requests' }).click();
    const mine = page.getByRole('listitem', { name: `Request ${id} by alice` });
    // A POST without the CSRF token is refused, even from the console's own origin with its cookie.
    const noCsrf = await page.evaluate(async (rid) => (await fetch(`/console/api/access/requests/${rid}/approve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, id);
    expect(noCsrf).toBe(403);
    expect((await tg.gw.services.store.getAccess(id))!.state).toBe('pending');
    await mine.getByLabel('Comment').fill('ok for INC-900');
    await mine.getByRole('button', { name: 'Approve' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: `Request ${id}: active.` }).waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-access-approved.png'), fullPage: true });
    const approved = await tg.waitForEvent((e) => e.type === 'access.approved' && e.details.request_id === id);
    expect(approved.actor.user).toBe('bob');
    expect(approved.source.via).toBe('console');
    await ctx.close();

    const after = psql(alice, 'pg-prod', 'SELECT 7 * 6');
    expect(await after.exited).toBe(0);
    expect(after.out().trim()).toBe('42');
  });

  it('an admin watches a live ssh session, sees what is typed after opening it and terminates it; an auditor watches without a terminate button', async () => {
    let go!: () => void;
    const typed = new Promise<void>((r) => (go = r));
    const ssh = sshHeld(alice, 'web-dev', typed, 'echo vigil-live-$((6*7))-typed');
    await waitFor(() => tg.gw.services.sessions.list().some((x) => x.target.name === 'web-dev'), 15_000, 'live ssh session');
    const id = tg.gw.services.sessions.list().find((x) => x.target.name === 'web-dev')!.id;

    // The auditor: sees the live view, no terminate button; a forged kill (with her CSRF token) is
    // refused by the server and recorded.
    const aud = await signedIn(audrey);
    await aud.page.getByLabel('State').selectOption('live');
    await aud.page.getByRole('button', { name: 'Filter' }).click();
    await aud.page.getByRole('link', { name: `Watch session ${id} live` }).click();
    await aud.page.getByRole('heading', { name: `Live: session ${id}` }).waitFor();
    await tg.waitForEvent((e) => e.type === 'session.watch_started' && e.actor.user === 'audrey' && e.details.session_id === id && e.source.via === 'console');
    expect(await aud.page.getByRole('button', { name: 'Terminate session' }).count()).toBe(0);
    const forged = await aud.page.evaluate(async (sid) => {
      const me = (await (await fetch('/console/api/me')).json()) as { csrf: string };
      const res = await fetch(`/console/api/sessions/${sid}/kill`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-vigil-csrf': me.csrf }, body: JSON.stringify({ reason: 'not mine to end' }) });
      return res.status;
    }, id);
    expect(forged).toBe(403);
    const refused = await tg.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'failure' && e.actor.user === 'audrey');
    expect(refused.source.via).toBe('console');
    expect(refused.details.session_id).toBe(id);

    // The admin, from the session's page: opens the live view, then the command is typed.
    const { ctx, page } = await signedIn(ada);
    await page.goto(`${base}/console/#/sessions/${id}`);
    await page.getByRole('link', { name: 'Watch live' }).click();
    await page.getByRole('heading', { name: `Live: session ${id}` }).waitFor();
    await page.locator('.ap-term').first().waitFor();
    await tg.waitForEvent((e) => e.type === 'session.watch_started' && e.actor.user === 'ada' && e.details.session_id === id);
    // A kill without the CSRF token is refused, even from the console's own page with its cookie.
    const noCsrf = await page.evaluate(async (sid) => (await fetch(`/console/api/sessions/${sid}/kill`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ reason: 'x' }) })).status, id);
    expect(noCsrf).toBe(403);
    expect(tg.gw.services.sessions.get(id)).toBeTruthy();
    go();
    // Both watchers see the command and its output (the shell computes 42: not an echo of the input).
    await expect.poll(() => page.locator('.ap-term').first().innerText(), { timeout: 20_000 }).toContain('vigil-live-42-typed');
    await expect.poll(() => aud.page.locator('.ap-term').first().innerText(), { timeout: 20_000 }).toContain('vigil-live-42-typed');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-live-ssh.png'), fullPage: true });
    // The auditor signs out (another tab): her live view ends with her console session.
    await aud.page.evaluate(async () => {
      const me = (await (await fetch('/console/api/me')).json()) as { csrf: string };
      await fetch('/console/api/signout', { method: 'POST', headers: { 'x-vigil-csrf': me.csrf } });
    });
    await aud.page.getByRole('status').filter({ hasText: 'Live view closed: console session ended' }).waitFor();
    await tg.waitForEvent((e) => e.type === 'session.watch_ended' && e.actor.user === 'audrey' && e.details.session_id === id);

    await page.getByLabel('Reason').fill('INC-4711 live test');
    await page.getByRole('button', { name: 'Terminate session' }).click();
    await page.getByRole('status').filter({ hasText: 'Session terminated.' }).waitFor();
    await ssh.exited;
    expect(ssh.out() + ssh.err()).toContain('terminated by ada: INC-4711 live test');
    const kill = await tg.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'success' && e.details.session_id === id);
    expect(kill.actor.user).toBe('ada');
    expect(kill.source.via).toBe('console');
    expect(kill.details.reason).toBe('INC-4711 live test');
    await page.getByRole('status').filter({ hasText: 'Session ended (terminated)' }).waitFor();
    await tg.waitForEvent((e) => e.type === 'session.watch_ended' && e.actor.user === 'ada' && e.details.session_id === id && e.source.via === 'console');
    await aud.ctx.close();
    await ctx.close();
  });

  it('an admin watches a live psql session\'s statements as they run and terminates it', async () => {
    let stdin!: NodeJS.WritableStream;
    // psql reading a pipe runs each statement as its line arrives; the session stays open meanwhile.
    const q = run('psql', ['-X', '-qAt', '-v', 'VERBOSITY=verbose', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg-dev user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`], {
      env: clientEnv(),
      input: async (w) => void (stdin = w),
    });
    stdin.write('SELECT 1;\n');
    await waitFor(() => tg.gw.services.sessions.list().some((x) => x.target.name === 'pg-dev'), 15_000, 'live psql session');
    const id = tg.gw.services.sessions.list().find((x) => x.target.name === 'pg-dev')!.id;

    const { ctx, page } = await signedIn(ada);
    await page.goto(`${base}/console/#/sessions/${id}/live`);
    await page.getByRole('heading', { name: `Live: session ${id}` }).waitFor();
    await page.locator('table.statements.live').waitFor();
    stdin.write("SELECT 'vigil-live-' || 6 * 7 AS live_answer;\n");
    await waitFor(() => q.out().includes('vigil-live-42'), 10_000, 'psql answer');
    const row = page.locator('table.statements.live tbody tr', { hasText: 'live_answer' }).last();
    await expect.poll(() => row.locator('td').nth(2).innerText(), { timeout: 10_000 }).toBe('success');
    expect(await row.locator('td').nth(1).innerText()).toBe("SELECT 'vigil-live-' || 6 * 7 AS live_answer");
    // A statement still running when the session is terminated: psql is reading the socket, so it sees the FATAL.
    stdin.write('SELECT pg_sleep(60);\n');
    await page.locator('table.statements.live tbody tr', { hasText: 'pg_sleep' }).filter({ hasText: 'running' }).waitFor();
    await page.getByLabel('Reason').fill('INC-42 runaway query');
    await page.getByRole('button', { name: 'Terminate session' }).click();
    await page.getByRole('status').filter({ hasText: 'Session terminated.' }).waitFor();
    await q.exited;
    expect(q.err()).toContain('terminated by ada: INC-42 runaway query');
    const kill = await tg.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'success' && e.details.session_id === id);
    expect(kill.source.via).toBe('console');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-live-psql.png'), fullPage: true });
    await ctx.close();
  });

  it('an auditor reads the access-review report for a period chosen in the page', async () => {
    const { ctx, page } = await signedIn(audrey);
    await page.getByRole('link', { name: 'Access review' }).click();
    await page.getByLabel('Since (30d or ISO)').fill('2h');
    await page.getByRole('button', { name: 'Show report' }).click();
    const report = page.frameLocator('iframe[title="Access review report"]');
    await report.locator('h1').filter({ hasText: 'Access review' }).waitFor({ timeout: 60_000 });
    // The report's charts ran (its own inline scripts, allowed by hash inside the sandboxed frame).
    await report.locator('html[data-charts="ready"]').waitFor();
    expect(await report.locator('#verification').innerText()).toContain('Audit chain');
    const ev = await tg.waitForEvent((e) => e.type === 'console.view' && e.details.view === 'report' && e.actor.user === 'audrey');
    expect(ev.source.via).toBe('console');
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-access-review.png'), fullPage: true });
    await ctx.close();
  });

  it('the pages ran under the strict CSP without a violation', () => {
    expect(cspViolations).toEqual([]);
  });
});
