import http from 'node:http';
import type net from 'node:net';
import { describe, it, expect, afterAll } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { run } from '../postgres/helpers.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * With OTEL_EXPORTER_OTLP_ENDPOINT set, the gateway starts the OpenTelemetry SDK and exports one span
 * per session. The collector here is a plain HTTP server receiving OTLP/HTTP JSON.
 */
describe('OpenTelemetry', () => {
  let pg: PostgresHandle | undefined;
  let tg: TestGateway | undefined;
  let collector: http.Server | undefined;
  afterAll(async () => {
    await tg?.stop();
    await pg?.stop();
    collector?.close();
  });

  it('exports a span per session when OTEL_EXPORTER_OTLP_ENDPOINT is set', async () => {
    const bodies: string[] = [];
    collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        if (req.url === '/v1/traces') bodies.push(body);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    });
    await new Promise<void>((r) => collector!.listen(0, '127.0.0.1', r));
    const port = (collector.address() as net.AddressInfo).port;
    Object.assign(process.env, {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_EXPORTER: 'otlp',
      OTEL_METRICS_EXPORTER: 'none',
      OTEL_LOGS_EXPORTER: 'none',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    });

    pg = await startPostgres();
    tg = await startTestGateway({
      targets: [{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'trust_user' }],
      roles: [{ name: 'dba', targets: ['pg'] }],
    });
    const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
    const conn = `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
    const r = await run('psql', ['-X', '-At', '-d', conn, '-c', 'select 1']);
    expect(r.stdout.trim()).toBe('1');
    const session = await tg.waitForEvent((e) => e.type === 'session.end');

    const span = await waitFor(() => {
      for (const b of bodies) {
        for (const rs of JSON.parse(b).resourceSpans ?? [])
          for (const ss of rs.scopeSpans ?? [])
            for (const s of ss.spans ?? []) {
              const attrs = Object.fromEntries((s.attributes ?? []).map((a: { key: string; value: { stringValue?: string } }) => [a.key, a.value.stringValue]));
              if (attrs['vigil.session_id'] === session.session_id) return { name: s.name as string, attrs };
            }
      }
      return undefined;
    }, 15_000, 'the session span at the collector');
    expect(span.name).toBe('postgres session');
    expect(span.attrs).toMatchObject({ 'vigil.user': 'alice', 'vigil.target': 'pg', 'vigil.end_reason': 'client_closed' });
  });
});
