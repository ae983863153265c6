import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type IssuedFiles, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';
import { ensureConsole } from '../support/console.ts';
import { startThrottleProxy, type ThrottleProxy } from '../support/throttle-proxy.ts';
import { SessionCatalog } from '../../src/console/catalog.ts';

/**
 * A 1-hour recording plays from its first chunk (issue #21: "stream the cast file; no full download
 * before play"). The console is reached through a relay that, once the page is up, lets each connection
 * pass only 2 MiB more: the ~27 MB cast cannot arrive. The player still shows the first frames; a seek to
 * the middle waits; once the relay lets everything through, the seek lands there.
 */

const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts');
const SID = 'S1HOURCAST000000000000000001';
const EVENTS = 36_000; // one every 100 ms for an hour
const HELD_BACK = 2 * 1024 * 1024;
let tg: TestGateway;
let proxy: ThrottleProxy;
let browser: Browser;
let audrey: IssuedFiles;
let base: string;
let castBytes: number;

const frame = (i: number) => `frame-${String(i).padStart(6, '0')}`;

beforeAll(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const dir = tempDir('vigil-console-stream-');
  await ensureConsole();
  tg = await startTestGateway({ mysql: { enabled: false }, roles: [{ name: 'auditor' }] }, dir);
  audrey = await tg.issue({ user: 'audrey', roles: ['auditor'] });

  // The recording of a 1-hour ssh session, as the recorder writes it (asciicast v2), and its catalog row.
  const file = tg.gw.services.recordings.pathOf(`${SID}/ch0.cast`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  const started = Math.floor(Date.now() / 1000) - 3700;
  fs.writeSync(fd, JSON.stringify({ version: 2, width: 120, height: 40, timestamp: started, env: { TERM: 'xterm-256color' } }) + '\n');
  const pad = 'x'.repeat(700);
  for (let i = 0; i < EVENTS; i += 1000) {
    let chunk = '';
    for (let j = i; j < i + 1000; j++) chunk += JSON.stringify([j / 10, 'o', `${frame(j)} ${pad}\r\n`]) + '\n';
    fs.writeSync(fd, chunk);
  }
  fs.closeSync(fd);
  castBytes = fs.statSync(file).size;
  const catalog = SessionCatalog.open(tg.dataDir);
  catalog.seed([
    {
      id: SID,
      user: 'alice',
      roles: ['engineer'],
      target: 'web-prod',
      protocol: 'ssh',
      started_at: new Date(started * 1000).toISOString(),
      ended_at: new Date((started + 3600) * 1000).toISOString(),
      end_reason: 'client_closed',
      duration_ms: 3_600_000,
      statements: 0,
      commands: 0,
      file_ops: 0,
    },
  ]);
  catalog.close();

  proxy = await startThrottleProxy(tg.ports.api);
  base = `https://127.0.0.1:${proxy.port}`;
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await proxy?.close();
  await tg?.stop();
});

/** The highest frame number on the player's terminal (-1 when none). */
async function lastFrame(text: string): Promise<number> {
  const seen = [...text.matchAll(/frame-(\d{6})/g)].map((m) => Number(m[1]));
  return seen.length ? Math.max(...seen) : -1;
}

describe('streamed replay of a long recording', () => {
  it('the player shows the first frames of a 1-hour cast while most of it has not arrived; a seek past it waits for it', async () => {
    expect(castBytes).toBeGreaterThan(10 * HELD_BACK);
    const ctx = await browser.newContext({
      viewport: { width: 1280, height: 800 },
      ignoreHTTPSErrors: true,
      clientCertificates: [{ origin: base, cert: Buffer.from(audrey.creds.x509Certificate), key: Buffer.from(audrey.creds.x509PrivateKey) }],
    });
    const page = await ctx.newPage();
    await page.goto(`${base}/console/`);
    await page.getByRole('button', { name: 'Sign in with client certificate' }).click();
    await page.getByRole('button', { name: 'Sign out' }).waitFor();

    // From here on each connection passes at most 2 MiB more: a player that needs the whole cast never plays.
    proxy.limit(HELD_BACK);
    const before = proxy.downstream;
    await page.evaluate(`location.hash = '#/sessions/${SID}'`);
    await page.getByRole('heading', { name: `Session ${SID}` }).waitFor();
    const player = page.locator('.ap-player').first();
    await player.waitFor();
    await player.click(); // play
    const term = page.locator('.ap-term').first();
    await expect.poll(() => term.innerText(), { timeout: 30_000 }).toContain(frame(0));
    // Playing: later frames follow, all from the part that came through.
    await expect.poll(async () => lastFrame(await term.innerText()), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
    const passed = proxy.downstream - before;
    expect(passed).toBeLessThan(castBytes / 4);
    await page.screenshot({ path: path.join(ARTIFACTS, 'console-stream-first-frames.png'), fullPage: true });

    // Seek to the middle (the player's "5" key): beyond what has arrived, so it waits...
    await page.locator('.ap-wrapper').first().focus();
    await page.keyboard.press('5');
    expect(await lastFrame(await term.innerText())).toBeLessThan(EVENTS / 4);
    // ...until the relay lets the rest through; then it lands at 30 minutes (event 18000).
    proxy.limit(Infinity);
    await expect.poll(async () => lastFrame(await term.innerText()), { timeout: 60_000 }).toBeGreaterThanOrEqual(EVENTS / 2 - 2);
    // Every view of a recording is on the record.
    const ev = await tg.waitForEvent((e) => e.type === 'console.view' && e.details.view === 'recording' && e.session_id === SID && e.actor.user === 'audrey');
    expect(ev.source.via).toBe('console');
    await ctx.close();
  });
});
