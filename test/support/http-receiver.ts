import http from 'node:http';
import type net from 'node:net';

/** A notification as a real HTTP receiver got it. */
export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export type Behaviour = (n: number) => 'ok' | 'fail' | 'hang';

/**
 * A real HTTP receiver on loopback (webhook, Slack, PagerDuty): `behave(n)` decides the n-th request's
 * answer; an accepted one is recorded before it is answered. `port` 0 picks one; `answerAfterMs` delays
 * every answer (a slow receiver, so deliveries overlap in time).
 */
export async function httpReceiver(behave: Behaviour = () => 'ok', port = 0, answerAfterMs = 0) {
  const accepted: Received[] = [];
  let n = 0;
  const hung: http.ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const what = behave(n++);
      if (what === 'hang') return void hung.push(res);
      if (what === 'fail') return void res.writeHead(500).end('down');
      accepted.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      if (answerAfterMs) setTimeout(() => res.writeHead(200).end('ok'), answerAfterMs);
      else res.writeHead(200).end('ok');
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const p = (server.address() as net.AddressInfo).port;
  return {
    url: (pth: string) => `http://127.0.0.1:${p}${pth}`,
    accepted,
    attempts: () => n,
    close: () => new Promise<void>((r) => { for (const h of hung) h.destroy(); server.closeAllConnections(); server.close(() => r()); }),
  };
}
