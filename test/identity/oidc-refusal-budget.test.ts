import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { caDir, CA_FILES } from '../../src/identity/index.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { secretsDir, tempDir } from '../support/tmp.ts';
import { startTestIdp, type TestIdp } from '../support/oidc-provider.ts';

/**
 * Refused sign-ins cost the caller nothing: anyone who reaches the API can post /v1/login/finish in a
 * loop. Each refusal within the source's budget is an auth.oidc.failure; beyond it they are answered 429
 * and counted into one auth.failure.summary, as every other unauthenticated refusal is.
 */

const BUDGET = 10;
const ATTEMPTS = 500;
let idp: TestIdp;
let tg: TestGateway;

beforeAll(async () => {
  const base = tempDir('vigil-oidc-budget-');
  idp = await startTestIdp({ alice: ['sre'] });
  const secret = secretsDir(base);
  tg = await startTestGateway(
    {
      mysql: { enabled: false },
      // A window far longer than the loop: every attempt falls into one window.
      budgets: { refusals_per_window: BUDGET, window: '10m' },
      identity: { oidc: { issuer: idp.issuer, client_id: idp.clientId, client_secret: { file: secret('oidc-client', idp.clientSecret) }, scopes: ['openid', 'profile', 'groups'], role_map: { sre: ['oncall'] } } },
      roles: [{ name: 'oncall' }],
    },
    base,
  );
}, 120_000);

afterAll(async () => {
  await tg?.stop();
  await idp?.stop();
});

describe('refused sign-ins and the refusal budget', () => {
  it(`${ATTEMPTS} bad /v1/login/finish from one address: at most the budget recorded one by one, plus one summary`, async () => {
    const agent = new https.Agent({ ca: fs.readFileSync(path.join(caDir(tg.dataDir), CA_FILES.x509CaCert)), keepAlive: true, maxSockets: 4 });
    const finish = (i: number) =>
      new Promise<number>((resolve, reject) => {
        const body = JSON.stringify({ login_id: `never-started-${i}`, callback_url: 'http://127.0.0.1:9/callback?code=x&state=y' });
        const req = https.request(`https://127.0.0.1:${tg.ports.api}/v1/login/finish`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end(body);
      });
    const statuses: number[] = [];
    try {
      for (let i = 0; i < ATTEMPTS; i += 4) statuses.push(...(await Promise.all([i, i + 1, i + 2, i + 3].map(finish))));
    } finally {
      agent.destroy();
    }
    expect(statuses).toHaveLength(ATTEMPTS);
    expect(statuses.filter((s) => s === 401)).toHaveLength(BUDGET);
    expect(statuses.filter((s) => s === 429)).toHaveLength(ATTEMPTS - BUDGET);

    const oneByOne = tg.events.filter((e) => e.type === 'auth.oidc.failure');
    expect(oneByOne).toHaveLength(BUDGET);
    for (const e of oneByOne) expect(e.details).toMatchObject({ reason: 'login_unknown', flow: 'code' });

    // The window's summary, as at shutdown (or when the window ends): nothing counted is lost.
    tg.gw.services.refusals!.sweep(true);
    const summary = await tg.waitForEvent((e) => e.type === 'auth.failure.summary' && e.target.protocol === 'oidc');
    expect(summary.source.ip).toBe('127.0.0.1');
    expect(summary.details).toMatchObject({ recorded: BUDGET, suppressed: ATTEMPTS - BUDGET, reasons: { login_unknown: ATTEMPTS - BUDGET } });
    const written = tg.events.filter((e) => e.type === 'auth.oidc.failure' || (e.type === 'auth.failure.summary' && e.target.protocol === 'oidc'));
    expect(written.length).toBeLessThanOrEqual(BUDGET + 1);
  }, 120_000);
});
