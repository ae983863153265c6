import https from 'node:https';
import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../src/identity/types.ts';
import { MAX_STREAMS_PER_USER } from '../../src/api/stream-slots.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { ConsoleClient, ensureConsole } from '../support/console.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The console's live view is bounded per user as the API's streams are: an auditor signed in to the
 * console cannot hold more than MAX_STREAMS_PER_USER live views open at once. Real gateway, real
 * certificates, real sessions registry.
 */

let tg: TestGateway;
let base: string;
let ca: string;

beforeAll(async () => {
  await ensureConsole();
  tg = await startTestGateway(
    {
      ssh: { enabled: false },
      postgres: { enabled: false },
      mysql: { enabled: false },
      targets: [{ name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 5432, database: 'app', user: 'x' }],
      roles: [{ name: 'auditor' }],
    },
    tempDir('vigil-console-live-cap-'),
  );
  base = `https://127.0.0.1:${tg.ports.api}`;
});
afterAll(async () => {
  await tg?.stop();
});

async function auditor(user: string): Promise<ConsoleClient> {
  const f = await tg.issue({ user, roles: ['auditor'] });
  const c = new ConsoleClient(base, f.creds.caCertificate, { cert: f.creds.x509Certificate, key: f.creds.x509PrivateKey });
  ca = f.creds.caCertificate;
  expect((await c.signIn()).status).toBe(200);
  return c;
}

interface LiveView {
  status: number;
  body: () => Promise<string>;
  close: () => void;
}

/** Open the live view of `sessionId`: resolves once its status line arrives (the view stays open). */
function openLive(c: ConsoleClient, sessionId: string): Promise<LiveView> {
  return new Promise((resolve, reject) => {
    const req = https.get(`${base}/console/api/sessions/${sessionId}/live?from=now`, { ca, agent: false, headers: { cookie: c.cookie!, accept: 'application/x-ndjson' } }, (res: http.IncomingMessage) => {
      let text = '';
      const ended = new Promise<string>((done) => res.on('end', () => done(text)).on('close', () => done(text)));
      res.on('data', (d) => (text += d));
      resolve({ status: res.statusCode!, body: () => ended, close: () => req.destroy() });
    });
    req.on('error', reject);
  });
}

describe('console live views are bounded per user', () => {
  it(`a ${MAX_STREAMS_PER_USER + 1}th live view of one auditor is refused with 429 VIGIL_TOO_MANY_STREAMS and recorded; closing one frees its slot; another auditor is not affected`, async () => {
    const audrey = await auditor('audrey');
    const ben = await auditor('ben');
    const p: Principal = { user: 'alice', roles: ['dev'], certSerial: 'a11ce03', credential: 'x509', notBefore: new Date(), notAfter: new Date(Date.now() + 3_600_000), extensions: [] };
    const h = tg.gw.services.sessions.open({ protocol: 'postgres', principal: p, target: { name: 'pg-prod', host: '127.0.0.1', port: 5432 }, source: { ip: '127.0.0.1', port: 9 }, grantIds: [] }, (reason) => h.close(reason));
    const open: LiveView[] = [];
    try {
      for (let i = 0; i < MAX_STREAMS_PER_USER; i++) {
        const v = await openLive(audrey, h.session.id);
        open.push(v);
        expect(v.status).toBe(200);
      }
      const refused = await openLive(audrey, h.session.id);
      // Before the fix: 200, a 17th live view, and so on without end.
      expect(refused.status).toBe(429);
      expect(JSON.parse(await refused.body())).toEqual({ error: { code: 'VIGIL_TOO_MANY_STREAMS', message: `Refused: ${MAX_STREAMS_PER_USER} live streams are open for audrey already; close one first.` } });
      const ev = await tg.waitForEvent((e) => e.type === 'api.request' && e.actor.user === 'audrey' && (e.details as { code?: string }).code === 'VIGIL_TOO_MANY_STREAMS');
      expect(ev.details).toMatchObject({ status: 429, path: `/console/api/sessions/${h.session.id}/live` });

      // Another auditor has slots of their own.
      const other = await openLive(ben, h.session.id);
      open.push(other);
      expect(other.status).toBe(200);

      // A view closed by the browser frees its slot (the server sees the close a moment later: retry).
      open.shift()!.close();
      let again: LiveView | undefined;
      for (let i = 0; i < 100 && again?.status !== 200; i++) {
        if (again) await new Promise((r) => setTimeout(r, 100));
        again = await openLive(audrey, h.session.id);
        if (again.status === 200) open.push(again);
      }
      expect(again?.status).toBe(200);
    } finally {
      for (const v of open) v.close();
      h.close('client_closed');
    }
  }, 60_000);
});
