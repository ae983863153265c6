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

  /** Spans seen at the collector so far: name and string/int attributes. */
  function spans(bodies: string[]): { name: string; attrs: Record<string, unknown> }[] {
    const out: { name: string; attrs: Record<string, unknown> }[] = [];
    for (const b of bodies)
      for (const rs of JSON.parse(b).resourceSpans ?? [])
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            out.push({ name: s.name, attrs: Object.fromEntries((s.attributes ?? []).map((a: { key: string; value: { stringValue?: string; intValue?: string } }) => [a.key, a.value.stringValue ?? a.value.intValue])) });
    return out;
  }

  it('exports a span per session, and one per guardrail decision and alert firing, when OTEL_EXPORTER_OTLP_ENDPOINT is set', async () => {
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
      guardrails: [{ name: 'no-drops', targets: ['pg'], roles: ['*'], sql: { block: ['drop'] } }],
      alerts: [{ name: 'blocked-statement', match: { type: 'guardrail.blocked' } }],
    });
    const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
    const conn = `host=127.0.0.1 port=${tg.ports.postgres} dbname=pg user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
    const r = await run('psql', ['-X', '-At', '-d', conn, '-c', 'select 1']);
    expect(r.stdout.trim()).toBe('1');
    const blocked = await run('psql', ['-X', '-At', '-d', conn, '-c', 'drop table if exists t']);
    expect(blocked.stderr).toContain('no-drops');
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

    // The real-time layer in the same trace backend: the guardrail decision and the alert it fired.
    const block = await tg.waitForEvent((e) => e.type === 'guardrail.blocked');
    const fired = await tg.waitForEvent((e) => e.type === 'alert.fired');
    const guardSpan = await waitFor(() => spans(bodies).find((s) => s.name === 'guardrail.blocked'), 15_000, 'guardrail.blocked span');
    expect(guardSpan.attrs).toMatchObject({ 'vigil.event_id': block.id, 'vigil.session_id': block.session_id, 'vigil.rule': 'no-drops', 'vigil.user': 'alice', 'vigil.outcome': 'failure' });
    const alertSpan = await waitFor(() => spans(bodies).find((s) => s.name === 'alert.fired'), 15_000, 'alert.fired span');
    expect(alertSpan.attrs).toMatchObject({ 'vigil.event_id': fired.id, 'vigil.rule': 'blocked-statement' });
  });
});
