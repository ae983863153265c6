import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import https from 'node:https';
import ssh2 from 'ssh2';
import YAML from 'yaml';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, clientEnv, type PostgresHandle } from '../support/postgres.ts';
import { startMariadb, type MariadbHandle } from '../support/mariadb.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { verifyAuditLog } from '../../recorder/audit/index.ts';
import type { ReportModel } from '../../recorder/reports/model.ts';

/**
 * The access-review report end to end: real sessions through the gateway with stock psql, mariadb and ssh
 * (a denied attempt, a just-in-time grant with a reason and an approver, a break-glass grant never used,
 * changes and reads, an unparseable statement, a revoked and an expired certificate), then
 * `vigil report access` as HTML opened in headless Chromium with every network request refused: the
 * figures, tables and charts shown are checked against the audit events, and a screenshot is kept in
 * test-artifacts/report.png.
 */

const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts');
let sshd: SshdHandle;
let pg: PostgresHandle;
let maria: MariadbHandle;
let tg: TestGateway;
let base: string;
let alice: IssuedFiles, bob: IssuedFiles, carol: IssuedFiles;
let knownHosts: string;
let configFile: string;
const MYSQL_PASSWORD = 'report-app-pass';

beforeAll(async () => {
  [sshd, pg, maria] = await Promise.all([startSshd(), startPostgres(), startMariadb()]);
  await maria.query(`CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '${MYSQL_PASSWORD}'; GRANT ALL ON *.* TO 'app'@'127.0.0.1'`);
  base = tempDir('vigil-report-');
  const secret = path.join(base, 'mysql.pass');
  fs.writeFileSync(secret, MYSQL_PASSWORD, { mode: 0o600 });
  const policy = {
    targets: [
      { name: 'web-prod', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub, labels: { env: 'prod' } },
      { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'prod' } },
      { name: 'pg-dev', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user', labels: { env: 'dev' } },
      { name: 'my-prod', protocol: 'mysql', host: '127.0.0.1', port: maria.port, user: 'app', password: { file: secret }, labels: { env: 'prod' } },
    ],
    roles: [
      { name: 'engineer', target_labels: { env: 'dev' } },
      { name: 'prod-access', target_labels: { env: 'prod' }, logins: ['*'], approvers: ['sre-lead'], max_ttl: '1h' },
      { name: 'sre-lead' },
    ],
    access: { on_call: ['carol'] },
  };
  tg = await startTestGateway(policy, base);
  // The CLI reads the same policy from a config file, as an operator's `vigil --config` would.
  configFile = path.join(base, 'vigil.yaml');
  fs.writeFileSync(configFile, YAML.stringify({ data_dir: tg.dataDir, ...policy }));
  [alice, bob, carol] = await Promise.all([
    tg.issue({ user: 'alice', roles: ['engineer'] }),
    tg.issue({ user: 'bob', roles: ['sre-lead'] }),
    tg.issue({ user: 'carol', roles: [] }),
  ]);
  const key = ssh2.utils.parseKey(tg.gw.services.identity.sshHostKey());
  const hostKey = (Array.isArray(key) ? key[0] : key) as ssh2.ParsedKey;
  knownHosts = path.join(base, 'known_hosts');
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${tg.ports.ssh} ${hostKey.type} ${hostKey.getPublicSSH().toString('base64')}\n`);
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await Promise.all([sshd?.stop(), pg?.stop(), maria?.stop()]);
  if (base) fs.rmSync(base, { recursive: true, force: true });
});

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

const psql = (who: IssuedFiles, target: string, script: string) =>
  run('psql', ['-X', '-qAt', '-v', 'ON_ERROR_STOP=0', '-d', `host=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=${who.creds.user} sslmode=verify-full sslrootcert=${who.ca} sslcert=${who.crt} sslkey=${who.key}`, '-f', '-'], script);

const ssh = (who: IssuedFiles, target: string, command: string) =>
  run('ssh', [
    '-F', '/dev/null', '-o', `Port=${tg.ports.ssh}`, '-o', `IdentityFile=${who.sshKey}`, '-o', `CertificateFile=${who.sshCert}`, '-o', 'IdentitiesOnly=yes',
    '-o', 'BatchMode=yes', '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=yes',
    `${target}@127.0.0.1`, command,
  ]);

const mariadb = (who: IssuedFiles, target: string, sql: string) =>
  run('mariadb', [
    '--no-defaults', '--protocol=TCP', '-h', '127.0.0.1', '-P', String(tg.ports.mysql), '-u', target,
    `--ssl-ca=${who.ca}`, `--ssl-cert=${who.crt}`, `--ssl-key=${who.key}`, '--ssl-verify-server-cert', '--batch', '--skip-column-names', '--force', '-e', sql,
  ]);

function api(method: string, p: string, who: IssuedFiles, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = https.request(
      `https://127.0.0.1:${tg.ports.api}${p}`,
      { method, agent: false, ca: fs.readFileSync(who.ca), cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key), headers: payload ? { 'content-type': 'application/json' } : {} },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Wait until every session started so far has its session.end on the bus. */
const allSessionsEnded = () =>
  waitFor(() => {
    const started = tg.events.filter((e) => e.type === 'session.start').map((e) => e.session_id);
    const ended = new Set(tg.events.filter((e) => e.type === 'session.end').map((e) => e.session_id));
    return started.every((s) => ended.has(s)) ? true : undefined;
  }, 20_000, 'every session ended');

/**
 * What each statement and command sent below is, decided here by hand (not by the report's parsers): the
 * report's change list must hold exactly the successful changes, its unclassified list the unparseable one.
 */
const PG_SCRIPT: [string, 'change' | 'read' | 'unparseable'][] = [
  ['CREATE TABLE IF NOT EXISTS report_notes (id int PRIMARY KEY, body text)', 'change'],
  ["INSERT INTO report_notes VALUES (1, 'first') ON CONFLICT DO NOTHING", 'change'],
  ['SELECT count(*) FROM report_notes', 'read'],
  ['GRANT SELECT ON report_notes TO PUBLIC', 'change'],
  ["ALTER SYSTEM SET work_mem = '8MB'", 'change'],
  ['SELEC 1', 'unparseable'],
];
const MY_SCRIPT: [string, 'change' | 'read'][] = [
  ['CREATE DATABASE IF NOT EXISTS rpt', 'change'],
  ['CREATE TABLE IF NOT EXISTS rpt.t (a int)', 'change'],
  ['INSERT INTO rpt.t VALUES (1)', 'change'],
  ['SELECT * FROM rpt.t', 'read'],
];
const SSH_COMMANDS: [string, 'change' | 'read'][] = [
  ['echo reviewed > /tmp/vigil-report-test.txt', 'change'],
  ['uptime', 'read'],
];
const KIND = new Map<string, string>([...PG_SCRIPT, ...MY_SCRIPT, ...SSH_COMMANDS]);

describe('vigil report access: HTML in headless Chromium, numbers checked against the events', () => {
  let model: ReportModel;
  let htmlFile: string;
  let revokedSerial: string;
  let expiredSerial: string;
  /** The last checkpoint of the log when the HTML was generated (the later runs each add a few records). */
  let checkpointAtHtml: number;

  it('real sessions, grants and refusals, then the report in all three formats from one model', async () => {
    // Denied: alice has no standing access to production.
    const denied = await psql(alice, 'pg-prod', 'SELECT 1;\n');
    expect(denied.code).not.toBe(0);
    await tg.waitForEvent((e) => e.type === 'auth.failure' && e.actor.user === 'alice' && e.target.name === 'pg-prod');

    // A just-in-time grant with a reason and an approver, and an on-call break-glass grant nobody uses.
    const req = await api('POST', '/v1/access/requests', alice, { role: 'prod-access', reason: 'INC-4521 replica lag', ttl: '30m' });
    expect(req.status).toBe(201);
    const grantId = req.body.request.id as string;
    expect((await api('POST', `/v1/access/requests/${grantId}/approve`, bob, {})).body.request.state).toBe('active');
    const bg = await api('POST', '/v1/access/requests', carol, { role: 'prod-access', reason: 'INC-9 site down', ttl: '15m', break_glass: true });
    expect(bg.body.request).toMatchObject({ state: 'active', breakGlass: true });
    const breakGlassId = bg.body.request.id as string;

    const p = await psql(alice, 'pg-prod', PG_SCRIPT.map(([s]) => s + ';').join('\n') + '\n');
    expect(p.stderr).toContain('syntax error');
    const m = await mariadb(alice, 'my-prod', MY_SCRIPT.map(([s]) => s + ';').join('\n'));
    expect(m.code).toBe(0);
    for (const [c] of SSH_COMMANDS) expect((await ssh(alice, 'web-prod', c)).code).toBe(0);
    expect((await psql(alice, 'pg-dev', 'SELECT 1;\n')).code).toBe(0);
    await allSessionsEnded();

    // Certificates: one revoked (through the CLI, as an operator would), one that expires within the period.
    const dave = await tg.issue({ user: 'dave', roles: ['engineer'] });
    revokedSerial = dave.creds.serial;
    const rv = await runCliCaptured(['cert', 'revoke', revokedSerial, '--reason', 'laptop lost', '--config', configFile]);
    expect(rv.code, rv.err).toBe(0);
    const erin = await tg.issue({ user: 'erin', roles: ['engineer'], ttlMs: 1_000 });
    expiredSerial = erin.creds.serial;
    await waitFor(() => (Date.now() > erin.creds.notAfter.getTime() + 10 ? true : undefined), 70_000, 'erin certificate expired');

    // The gateway seals the log on stop: the report then verifies a chain ending on that last checkpoint.
    await tg.stop();
    const verified = verifyAuditLog(dataPaths(tg.dataDir).audit, fs.readFileSync(dataPaths(tg.dataDir).auditPublicKey));
    expect(verified.status).toBe('unwitnessed');
    checkpointAtHtml = verified.checkpointedSeq;

    fs.mkdirSync(ARTIFACTS, { recursive: true });
    htmlFile = path.join(ARTIFACTS, 'report.html');
    // One period for the three runs (each run adds its own report.generated after it).
    const until = new Date().toISOString();
    const period = ['--since', new Date(Date.now() - 3_600_000).toISOString(), '--until', until];
    const r = await runCliCaptured(['report', 'access', ...period, '--format', 'html', '--out', htmlFile, '--config', configFile]);
    expect(r.code, r.err).toBe(0);
    expect(fs.statSync(htmlFile).mode & 0o777).toBe(0o600);
    const j = await runCliCaptured(['report', 'access', ...period, '--format', 'json', '--config', configFile]);
    expect(j.code, j.err).toBe(0);
    model = JSON.parse(j.out) as ReportModel;
    const md = await runCliCaptured(['report', 'access', ...period, '--format', 'md', '--config', configFile]);
    expect(md.code, md.err).toBe(0);

    // The events as the gateway's bus saw them.
    const events: AuditEvent[] = tg.events;
    const starts = events.filter((e) => e.type === 'session.start');
    const queries = events.filter((e) => (e.type === 'db.query' || e.type === 'ssh.exec') && KIND.has(String(e.details.sql ?? e.details.query ?? e.details.command)));
    const textOf = (e: AuditEvent) => String(e.details.sql ?? e.details.query ?? e.details.command);
    const changes = queries.filter((e) => KIND.get(textOf(e)) === 'change' && e.outcome !== 'failure');
    const failedChanges = queries.filter((e) => KIND.get(textOf(e)) === 'change' && e.outcome === 'failure');
    const refusals = events.filter((e) => e.type === 'auth.failure');

    // Every statement and command above was recorded (nothing the test counts on is missing).
    expect(new Set(queries.map(textOf))).toEqual(new Set(KIND.keys()));
    expect(model.summary.sessions).toBe(starts.length);
    expect(model.summary.people).toBe(new Set(starts.map((e) => e.actor.user)).size);
    expect(model.summary.targets).toBe(new Set(starts.map((e) => e.target.name)).size);
    expect(model.changes.map((c) => c.text).sort()).toEqual(changes.map(textOf).sort());
    expect(model.unclassified.map((c) => c.text)).toEqual(['SELEC 1']);
    expect(model.summary.denied_or_failed).toBe(refusals.length + failedChanges.length);
    expect(model.denied.some((d) => d.type === 'auth.failure' && d.user === 'alice' && d.target === 'pg-prod')).toBe(true);
    // Who had access and why: the grant with its reason, approver and sessions; the break-glass one unused.
    const grant = model.grants.find((g) => g.id === grantId)!;
    expect(grant).toMatchObject({ user: 'alice', reason: 'INC-4521 replica lag', approvers: ['bob'], break_glass: false });
    expect(grant.sessions).toBe(starts.filter((e) => (e.details.grant_ids as string[] | undefined)?.includes(grantId)).length);
    expect(grant.sessions).toBeGreaterThanOrEqual(3);
    // Who had access to what: alice's certificate role reaches the dev target, her grant the production ones.
    expect(grant.targets.sort()).toEqual(['my-prod', 'pg-prod', 'web-prod']);
    expect(model.access.find((a) => a.user === 'alice')).toEqual({
      user: 'alice', roles: ['engineer'], targets: ['my-prod', 'pg-dev', 'pg-prod', 'web-prod'], granted: ['prod-access (web-prod, pg-prod, my-prod)'], sessions: starts.length,
    });
    expect(model.access.find((a) => a.user === 'carol')).toMatchObject({ roles: [], sessions: 0 });
    expect(model.break_glass.map((g) => g.id)).toEqual([breakGlassId]);
    expect(model.grants_unused.map((g) => g.id)).toEqual([breakGlassId]);
    expect(model.certificates.find((c) => c.serial === revokedSerial)).toMatchObject({ status: 'revoked', revoke_reason: 'laptop lost' });
    expect(model.certificates.find((c) => c.serial === expiredSerial)).toMatchObject({ status: 'expired' });
    // The chain verification, ending on the checkpoint the gateway wrote when it stopped.
    expect(model.verification).toMatchObject({ status: 'unwitnessed', ok: true });
    expect(model.verification.checkpoint!.seq).toBeGreaterThanOrEqual(verified.checkpointedSeq);
    // Markdown shows the same model.
    expect(md.out).toContain(`| Sessions | ${model.summary.sessions} |`);
    expect(md.out).toContain('INC-4521 replica lag');
    expect(md.out).toContain('| `GRANT SELECT ON report_notes TO PUBLIC` |');
    // The ALTER SYSTEM is a change when it succeeds, a failed attempt when the server refuses it.
    const alter = queries.find((e) => textOf(e).startsWith('ALTER SYSTEM'))!;
    if (alter.outcome === 'failure') expect(model.denied.some((d) => d.type === 'db.query' && d.reason.includes("ALTER SYSTEM SET work_mem = '8MB'"))).toBe(true);
    else expect(model.changes.some((c) => c.class === 'config')).toBe(true);
  }, 240_000);

  it('the HTML opens offline in Chromium, makes no request, shows the same numbers and draws both charts', async () => {
    expect(model, 'the first test built the report').toBeDefined();
    const profile = tempDir('vigil-chromium-');
    let context: BrowserContext | undefined;
    const requests: string[] = [];
    const blocked: string[] = [];
    const problems: string[] = [];
    try {
      context = await chromium.launchPersistentContext(profile, {
        executablePath: '/usr/bin/chromium',
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1400, height: 1000 },
      });
      await context.route('**/*', (route) => {
        const url = route.request().url();
        if (url.startsWith('file://')) return route.continue();
        blocked.push(url);
        return route.abort();
      });
      const page = await context.newPage();
      page.on('request', (r) => requests.push(r.url()));
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      await page.goto('file://' + htmlFile, { waitUntil: 'load' });
      await page.waitForSelector('html[data-charts="ready"]', { timeout: 15_000 });

      // No network: the only request is the file itself; nothing was blocked; no CSP violation or error.
      expect(requests).toEqual(['file://' + htmlFile]);
      expect(blocked).toEqual([]);
      expect(problems).toEqual([]);

      // The figures shown are the model's, and the model's are the events' (checked in the first test).
      const figures = await page.$$eval('[data-figure]', (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-figure'), Number(e.textContent)])));
      expect(figures).toEqual(model.summary);
      const rows = await page.$$eval('table[data-rows]', (ts) => Object.fromEntries(ts.map((t) => [t.id, t.querySelectorAll('tbody tr').length])));
      expect(rows['table-changes']).toBe(model.changes.length);
      expect(rows['table-sessions']).toBe(model.sessions.per_person_target.length);
      expect(rows['table-access']).toBe(model.access.length);
      expect(await page.textContent('#table-access')).toContain('prod-access (web-prod, pg-prod, my-prod)');
      const changeText = await page.textContent('#table-changes');
      expect(changeText).toContain('GRANT SELECT ON report_notes TO PUBLIC');
      expect(changeText).toContain('echo reviewed > /tmp/vigil-report-test.txt');
      expect(await page.textContent('#table-unclassified')).toContain('SELEC 1');
      expect(await page.getAttribute('#verification', 'data-status')).toBe('unwitnessed');
      expect(await page.textContent('#verification')).toContain(`signed checkpoint seq ${checkpointAtHtml} `);

      // Both charts drew bars from the same data: pixels on the canvas, and the chart's data is the model's.
      for (const id of ['chart-per-day', 'chart-per-target']) {
        const painted = await page.$eval(`#${id}`, (c) => {
          // Runs in the page (DOM types are not in this project's lib): a canvas element.
          const canvas = c as unknown as { width: number; height: number; getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
          const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let n = 0;
          for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) n++;
          return { n, w: canvas.width, h: canvas.height };
        });
        expect(painted.w).toBeGreaterThan(0);
        expect(painted.n).toBeGreaterThan(1000);
      }
      const perTarget = await page.evaluate(() => {
        const chart = (globalThis as unknown as { Chart: { getChart(id: string): { data: { labels: string[]; datasets: { data: number[] }[] } } } }).Chart.getChart('chart-per-target');
        return Object.fromEntries(chart.data.labels.map((l, i) => [l, chart.data.datasets[0].data[i]]));
      });
      const expected: Record<string, number> = {};
      for (const e of tg.events) if (e.type === 'session.start') expected[e.target.name] = (expected[e.target.name] ?? 0) + 1;
      expect(perTarget).toEqual(expected);

      await page.screenshot({ path: path.join(ARTIFACTS, 'report.png'), fullPage: true });
      expect(fs.statSync(path.join(ARTIFACTS, 'report.png')).size).toBeGreaterThan(10_000);
    } finally {
      await context?.close();
      fs.rmSync(profile, { recursive: true, force: true });
    }
  }, 120_000);
});
