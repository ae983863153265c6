import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { formatPublicKeyLine, fromKeyObject } from '../../src/identity/ssh-keys.ts';
import { MAX_PENDING, MAX_PENDING_PER_SOURCE, OIDC_START_PROTOCOL } from '../../src/identity/oidc/login.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { freePort, secretsDir, tempDir } from '../support/tmp.ts';
import { startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * Starting a sign-in costs the caller nothing and needs no credential (GET /console/oidc/start, POST
 * /v1/login/start and /v1/login/device, the last one also a call to the IdP). Unlimited, one address could
 * start enough of them to push everyone else's sign-in in progress out of the gateway's table. Starts are
 * budgeted per source address (the gateway's refusal budget, protocol oidc-start: 429 and one
 * auth.failure.summary beyond it), a source keeps at most MAX_PENDING_PER_SOURCE sign-ins in progress
 * (its own oldest makes room), and a full table refuses new starts instead of dropping anyone's.
 *
 * The API trusts 127.0.0.1 as a load balancer: every request carries a PROXY protocol header naming the
 * client, so each test speaks from its own addresses, as the budget sees them.
 */

const BUDGET = 5;
/** Allow-listed (budgets.allow): never limited by the start budget, so only the pending caps stop them. */
const UNLIMITED_NET = '198.51.100';

let idp: TestIdp;
let idpStopped = false;
let tg: TestGateway;
let apiPort: number;
let ca: string;

beforeAll(async () => {
  const dir = tempDir('vigil-oidc-start-budget-');
  apiPort = await freePort();
  idp = await startTestIdp({ audrey: ['audit'] }, { redirectUris: [`https://127.0.0.1:${apiPort}/console/oidc/callback`] });
  const secret = secretsDir(dir);
  tg = await startTestGateway(
    {
      api: { listen: `127.0.0.1:${apiPort}`, proxy_protocol: { trusted: ['127.0.0.1'] } },
      mysql: { enabled: false },
      // A window far longer than the test: every start of a source falls into one window.
      budgets: { refusals_per_window: BUDGET, window: '10m', allow: [`${UNLIMITED_NET}.0/24`] },
      identity: { oidc: { issuer: idp.issuer, client_id: idp.clientId, client_secret: { file: secret('oidc-client', idp.clientSecret) }, scopes: ['openid', 'profile', 'groups'], role_map: { audit: ['auditor'] } } },
      roles: [{ name: 'auditor' }],
    },
    dir,
  );
  ca = fs.readFileSync(path.join(caDir(tg.dataDir), CA_FILES.x509CaCert), 'utf8');
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  if (!idpStopped) await idp?.stop();
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One HTTPS request to the API as if from `clientIp`, behind the trusted balancer (PROXY protocol v1). */
function from(clientIp: string, method: 'GET' | 'POST', pathAndQuery: string, opts: { body?: unknown; cookie?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = http.request(
      {
        host: '127.0.0.1',
        port: apiPort,
        method,
        path: pathAndQuery,
        headers: { ...(body ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...(opts.cookie ? { cookie: opts.cookie } : {}) },
        createConnection: () => {
          const raw = net.connect(apiPort, '127.0.0.1');
          raw.write(`PROXY TCP4 ${clientIp} 127.0.0.1 40000 ${apiPort}\r\n`);
          return tls.connect({ socket: raw, ca, host: '127.0.0.1' });
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const keys = {
  ssh_public_key: formatPublicKeyLine(fromKeyObject(crypto.generateKeyPairSync('ed25519').privateKey), 'test'),
  x509_public_key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }).toString(),
};
const consoleStart = (ip: string) => from(ip, 'GET', '/console/oidc/start');
const cliStart = (ip: string) => from(ip, 'POST', '/v1/login/start', { body: { ...keys, redirect_uri: 'http://127.0.0.1:45678/callback' } });
const deviceStart = (ip: string) => from(ip, 'POST', '/v1/login/device', { body: keys });
/** The console's sign-in cookie a start set. */
const cookieOf = (r: Reply) => String((r.headers['set-cookie'] as string[])[0]).split(';')[0];
/** A callback for the browser's sign-in with a state that is not its own: tells "in progress" from "gone". */
const consoleCallback = async (ip: string, cookie: string) => /id="reason">([^<]*)/.exec((await from(ip, 'GET', '/console/oidc/callback?state=not-this-one&code=x', { cookie })).text)?.[1] ?? '';
const STILL_IN_PROGRESS = /does not belong to this sign-in/;
const GONE = /No such sign-in in progress/;

/** `n` requests, `width` at a time. */
async function inBatches(n: number, width: number, one: (i: number) => Promise<Reply>): Promise<Reply[]> {
  const out: Reply[] = [];
  for (let i = 0; i < n; i += width) out.push(...(await Promise.all(Array.from({ length: Math.min(width, n - i) }, (_, j) => one(i + j)))));
  return out;
}

describe('starting OIDC sign-ins: per-source budget and caps', () => {
  it('starts beyond the source budget are answered 429 (console, CLI and device flow alike) and summarised once, per PROXY-declared address', async () => {
    const flooder = '203.0.113.7';
    const within = [await consoleStart(flooder), await cliStart(flooder), await deviceStart(flooder), ...(await inBatches(BUDGET - 3, 2, () => consoleStart(flooder)))];
    expect(within.map((r) => r.status)).toEqual([302, 201, 201, ...Array(BUDGET - 3).fill(302)]);

    const beyond = [...(await inBatches(3, 3, () => consoleStart(flooder))), ...(await inBatches(3, 3, () => cliStart(flooder))), ...(await inBatches(3, 3, () => deviceStart(flooder)))];
    for (const r of beyond) {
      expect(r.status).toBe(429);
      expect(r.text).toMatch(/Too many sign-ins started from your address; try again in \d+ seconds\./);
      expect(Number(r.headers['retry-after'])).toBeGreaterThan(0);
    }
    expect(JSON.parse(beyond[3].text).error).toMatchObject({ code: 'VIGIL_RATE_LIMITED', reason: 'too_many_starts' });

    // Another client behind the same balancer has its own budget: the address is the one in the PROXY header.
    expect((await consoleStart('203.0.113.8')).status).toBe(302);

    // The window's summary, as at shutdown (or when the window ends).
    tg.gw.services.refusals!.sweep(true);
    const summary = await tg.waitForEvent((e) => e.type === 'auth.failure.summary' && e.target.protocol === OIDC_START_PROTOCOL);
    expect(summary.source.ip).toBe(flooder);
    expect(summary.details).toMatchObject({ recorded: BUDGET, suppressed: beyond.length, reasons: { too_many_starts: beyond.length } });
    expect(tg.events.filter((e) => e.type === 'auth.failure.summary' && e.target.protocol === OIDC_START_PROTOCOL)).toHaveLength(1);
  }, 60_000);

  it('1000 starts from one address leave another address\'s sign-in in progress; the flood only drops its own oldest', async () => {
    const victim = await consoleStart('203.0.113.20');
    expect(victim.status).toBe(302);
    const flood = await inBatches(1000, 50, () => consoleStart(`${UNLIMITED_NET}.9`));
    expect(flood.every((r) => r.status === 302)).toBe(true);

    expect(await consoleCallback('203.0.113.20', cookieOf(victim))).toMatch(STILL_IN_PROGRESS);
    expect(await consoleCallback(`${UNLIMITED_NET}.9`, cookieOf(flood[flood.length - 1]))).toMatch(STILL_IN_PROGRESS);
    expect(await consoleCallback(`${UNLIMITED_NET}.9`, cookieOf(flood[0]))).toMatch(GONE);
  }, 120_000);

  it('a full table of sign-ins in progress refuses new starts with 503 instead of dropping anyone\'s', async () => {
    // /v1/login/* keeps its own table (the console's is another): the victim's is the oldest in it.
    const victim = await cliStart('203.0.113.30');
    expect(victim.status).toBe(201);
    const loginId = JSON.parse(victim.text).login_id as string;

    const sources = Math.ceil(MAX_PENDING / MAX_PENDING_PER_SOURCE);
    const starts = await inBatches(sources * MAX_PENDING_PER_SOURCE, 50, (i) => cliStart(`${UNLIMITED_NET}.${100 + Math.floor(i / MAX_PENDING_PER_SOURCE)}`));
    const full = starts.filter((r) => r.status === 503);
    expect(starts.every((r) => r.status === 201 || r.status === 503)).toBe(true);
    // At least the surplus over the table's room is refused (earlier tests may have left a few in it too).
    expect(full.length).toBeGreaterThanOrEqual(sources * MAX_PENDING_PER_SOURCE - (MAX_PENDING - 1));
    expect(JSON.parse(full[0].text).error).toMatchObject({ code: 'VIGIL_BUSY', reason: 'busy', message: expect.stringMatching(/Too many sign-ins are in progress on this gateway; try again in \d+ seconds\./) });
    expect(Number(full[0].headers['retry-after'])).toBeGreaterThan(0);

    const finish = await from('203.0.113.30', 'POST', '/v1/login/finish', { body: { login_id: loginId, callback_url: 'http://127.0.0.1:45678/callback?state=not-this-one&code=x' } });
    expect(JSON.parse(finish.text).error).toMatchObject({ reason: 'state_mismatch' });
  }, 180_000);

  it('a device start over budget is refused before the IdP is asked for a code', async () => {
    const over = '203.0.113.40';
    await inBatches(BUDGET, BUDGET, () => consoleStart(over));
    // With the IdP gone, a device start that reaches it fails on the way there; one over budget never gets that far.
    await idp.stop();
    idpStopped = true;
    const reachesIdp = await deviceStart('203.0.113.41');
    expect(reachesIdp.status).not.toBe(429);
    expect(reachesIdp.status).not.toBe(201);
    const refused = await deviceStart(over);
    expect(refused.status).toBe(429);
    expect(JSON.parse(refused.text).error).toMatchObject({ reason: 'too_many_starts' });
  }, 60_000);
});
