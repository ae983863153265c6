import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import ssh2 from 'ssh2';
import { chromium, type Browser, type Frame, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { ConsoleClient, ensureConsole, request } from '../support/console.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { CONSOLE_CSP } from '../../src/console/static.ts';

/**
 * Stored XSS review of the console: an engineer plants markup and script in everything the console and
 * the access-review report show an auditor (SQL text, a failing statement's error, a typed shell command,
 * terminal output with an OSC 8 `javascript:` hyperlink, an SFTP path, an access request's reason), with
 * stock psql, ssh and sftp through a real gateway; a real Chromium then shows every page. A payload that
 * runs sets `window.__pwned` or opens a dialog; neither may happen, and the payloads must be shown as text.
 * Also: the security headers of every kind of console response, including errors.
 */

const MARK = `x${Date.now().toString(36)}`;
const IMG = (n: number) => `<img src=x onerror=window.__pwned=${n};alert(${n})>`;
const SQL = `SELECT '${IMG(1)}' AS "</script><script>window.__pwned=2</script>${MARK}"`;
const BAD_SQL = `SELECT * FROM "${IMG(3)}${MARK}"`;
const REASON = `</script><script>window.__pwned=6</script>${IMG(6)} ${MARK}`;
const SFTP_DIR = `/tmp/${IMG(7)}-${MARK}`;
/** Shell text that prints an OSC 8 hyperlink to `javascript:` (the printf escapes are expanded by the shell). */
const OSC8_COMMAND = `printf '\\033]8;;javascript:window.__pwned=5\\033\\\\osc8-${MARK}\\033]8;;\\033\\\\\\n'; echo '${IMG(4)}'`;

let sshd: SshdHandle;
let pg: PostgresHandle;
let tg: TestGateway;
let base: string;
let browser: Browser;
let alice: IssuedFiles, audrey: IssuedFiles;
let knownHosts: string;

beforeAll(async () => {
  const dir = tempDir('vigil-console-xss-');
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
      ],
    },
    dir,
  );
  base = `https://127.0.0.1:${tg.ports.api}`;
  [alice, audrey] = await Promise.all([tg.issue({ user: 'alice', roles: ['engineer'] }), tg.issue({ user: 'audrey', roles: ['auditor'] })]);
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

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string; input?: (w: NodeJS.WritableStream, out: () => string) => Promise<void> } = {}) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  child.stdin.on('error', () => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const exited = new Promise<number | null>((r) => child.once('close', (code) => (clearTimeout(timer), r(code))));
  if (opts.input) void opts.input(child.stdin, () => out).catch(() => child.kill('SIGKILL'));
  else child.stdin.end(opts.stdin ?? '');
  return { exited, out: () => out, err: () => err };
}

const psql = (who: IssuedFiles, target: string, sql: string) =>
  run('psql', ['-X', '-qAt', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-c', sql], { env: clientEnv() });

const sshOpts = (who: IssuedFiles) => ['-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes', '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes'];

/** Stock `ssh -tt` into a shell: type a line, wait for `expectOut`, exit. */
const sshTyping = (who: IssuedFiles, target: string, line: string, expectOut: string) =>
  run('ssh', ['-tt', ...sshOpts(who), `${target}@127.0.0.1`], {
    input: async (w, out) => {
      await waitFor(() => out().length > 0, 15_000, 'shell prompt');
      await new Promise((r) => setTimeout(r, 300));
      for (const ch of line + '\r') {
        w.write(ch);
        await new Promise((r) => setTimeout(r, 5));
      }
      await waitFor(() => out().includes(expectOut), 15_000, `output ${expectOut}`);
      w.write('exit\r');
    },
  });

function apiPost(p: string, who: IssuedFiles, body: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${base}${p}`, { method: 'POST', agent: false, ca: who.creds.caCertificate, cert: who.creds.x509Certificate, key: who.creds.x509PrivateKey, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

async function sessionOf(target: string, contains: (e: { type: string; details: Record<string, unknown> }) => boolean): Promise<string> {
  const hit = await tg.waitForEvent((e) => e.target.name === target && contains(e), 30_000);
  await tg.waitForEvent((e) => e.type === 'session.end' && e.session_id === hit.session_id, 30_000);
  return hit.session_id!;
}

/** The session's page, once its own data is shown (a hash change keeps the previous page until then). */
async function openSession(page: Page, id: string): Promise<void> {
  await page.goto(`${base}/console/#/sessions/${id}`);
  await page.getByRole('heading', { name: `Session ${id}` }).waitFor();
}

/** Whether a payload ran in the page or any of its frames. */
async function pwned(page: Page): Promise<unknown[]> {
  const frames: Frame[] = page.frames();
  return (await Promise.all(frames.map((f) => f.evaluate(() => (globalThis as { __pwned?: unknown }).__pwned).catch(() => undefined)))).filter((v) => v !== undefined);
}

// ---- the review ---------------------------------------------------------------------------------------

describe('console stored XSS (Chromium, real sessions)', () => {
  it('payloads planted through psql, ssh, sftp and an access request are shown as text and never run', async () => {
    // Plant: statements (one failing, its error quoting the payload), a typed command whose output carries
    // an OSC 8 javascript: link, an SFTP path, an access request's reason.
    const ok = psql(alice, 'pg-dev', SQL);
    const bad = psql(alice, 'pg-dev', BAD_SQL);
    expect(await ok.exited).toBe(0);
    expect(await bad.exited).not.toBe(0);
    const shell = sshTyping(alice, 'web-dev', OSC8_COMMAND, `osc8-${MARK}`);
    expect(await shell.exited).toBe(0);
    const sftp = run('sftp', [...sshOpts(alice), '-b', '-', 'web-dev@127.0.0.1'], { stdin: `mkdir "${SFTP_DIR}"\nrmdir "${SFTP_DIR}"\n` });
    expect(await sftp.exited, sftp.err()).toBe(0);
    const req = await apiPost('/v1/access/requests', alice, { role: 'prod-access', reason: REASON, ttl: '30m' });
    expect(req.status).toBe(201);

    const pgOk = await sessionOf('pg-dev', (e) => e.type === 'db.query' && String(e.details.sql).includes('__pwned=2'));
    const pgBad = await sessionOf('pg-dev', (e) => e.type === 'db.query' && String(e.details.sql).includes('__pwned=3'));
    const sshSession = await sessionOf('web-dev', (e) => e.type === 'ssh.command' && String(e.details.command).includes(`osc8-${MARK}`));
    const sftpSession = await sessionOf('web-dev', (e) => e.type === 'ssh.sftp' && String(e.details.path ?? '').includes(MARK));

    const ctx = await browser.newContext({
      ignoreHTTPSErrors: true,
      viewport: { width: 1280, height: 900 },
      clientCertificates: [{ origin: base, cert: Buffer.from(audrey.creds.x509Certificate), key: Buffer.from(audrey.creds.x509PrivateKey) }],
    });
    const dialogs: string[] = [];
    const page = await ctx.newPage();
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await page.goto(`${base}/console/`);
    await page.getByRole('button', { name: 'Sign in with client certificate' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();

    // The session list and each session's page.
    await page.getByRole('link', { name: new RegExp(`Session ${pgOk} of alice`) }).waitFor();
    await openSession(page, pgOk);
    await page.locator('table.statements td code', { hasText: '__pwned=2' }).waitFor();
    expect(await page.locator('table.statements td code', { hasText: '__pwned=2' }).innerText()).toBe(SQL);
    await openSession(page, pgBad);
    await page.locator('table.statements td', { hasText: 'failure' }).first().waitFor();
    expect(await page.locator('table.statements').innerText()).toContain(`"${IMG(3)}${MARK}"`);
    await openSession(page, sftpSession);
    // The path itself, not just the run's mark: the previous session's page (its statements carry the mark
    // too) may still be on screen while this one loads.
    await page.locator('table code', { hasText: SFTP_DIR }).first().waitFor();
    expect(await page.locator('table code', { hasText: SFTP_DIR }).first().innerText()).toBe(SFTP_DIR);

    // The ssh session: the command as text, and the replay played to its end (OSC 8 output included).
    await openSession(page, sshSession);
    await page.locator('ul.commands code', { hasText: `osc8-${MARK}` }).waitFor();
    await page.getByLabel('Speed').selectOption('8');
    const player = page.locator('.ap-player').first();
    await player.waitFor();
    await player.click();
    await expect.poll(() => page.locator('.ap-term').first().innerText(), { timeout: 30_000 }).toMatch(new RegExp(`^osc8-${MARK} *$`, 'm'));
    await expect.poll(() => page.locator('.ap-term').first().innerText(), { timeout: 30_000 }).toContain(IMG(4));
    expect(await page.locator('a[href^="javascript:" i]').count()).toBe(0);

    // Events search over everything, and the access requests (pending, reason as text).
    await page.goto(`${base}/console/#/events`);
    await page.getByLabel('Limit').fill('1000');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('code.details', { hasText: MARK }).first().waitFor();
    await page.goto(`${base}/console/#/access`);
    const item = page.getByRole('listitem', { name: `Request ${req.body.request.id} by alice` });
    await item.waitFor();
    expect(await item.innerText()).toContain(REASON);

    // The access-review report in its frame: the reason, statements and commands as text.
    await page.goto(`${base}/console/#/reports`);
    await page.getByLabel('Since (30d or ISO)').fill('1h');
    await page.getByRole('button', { name: 'Show report' }).click();
    const report = page.frameLocator('iframe[title="Access review report"]');
    await report.locator('html[data-charts="ready"]').waitFor({ timeout: 90_000 });
    const reportText = await report.locator('body').innerText();
    expect(reportText).toContain(`mkdir ${SFTP_DIR}`);

    expect(await pwned(page)).toEqual([]);
    expect(dialogs).toEqual([]);
    await ctx.close();
  });

  it('every kind of console response carries the console CSP and nosniff (pages, assets, errors)', async () => {
    const ca = audrey.creds.caCertificate;
    const signed = new ConsoleClient(base, ca, { cert: audrey.creds.x509Certificate, key: audrey.creds.x509PrivateKey });
    expect((await signed.signIn()).status).toBe(200);
    const index = await request(`${base}/console/`, { ca });
    const asset = /\/console\/(assets\/[A-Za-z0-9._-]+\.js)/.exec(index.text)![1];
    const cases: [string, Promise<{ status: number; headers: Record<string, unknown> }>][] = [
      ['index', Promise.resolve(index)],
      ['asset', request(`${base}/console/${asset}`, { ca })],
      ['missing asset', request(`${base}/console/assets/missing.js`, { ca })],
      ['redirect', request(`${base}/console`, { ca })],
      ['unsigned api', request(`${base}/console/api/me`, { ca })],
      ['unknown api', signed.get('/console/api/nothing-here')],
      ['bad method', request(`${base}/console/x`, { method: 'POST', ca })],
      ['oidc not configured', request(`${base}/console/oidc/start`, { ca })],
    ];
    for (const [name, reply] of cases) {
      const r = await reply;
      expect(r.status, name).toBeLessThan(500);
      expect(r.headers['content-security-policy'], name).toBe(CONSOLE_CSP);
      expect(r.headers['x-content-type-options'], name).toBe('nosniff');
    }
  });

  it('GET /console/assets/ (the directory, no sign-in needed) is a 404 with the headers, not an EISDIR that ends the gateway', async () => {
    const ca = audrey.creds.caCertificate;
    const r = await request(`${base}/console/assets/`, { ca });
    expect(r.status).toBe(404);
    expect(r.headers['content-security-policy']).toBe(CONSOLE_CSP);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    // The gateway still answers.
    expect((await request(`${base}/healthz`, { ca })).status).toBe(200);
  });
});
