import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Syslog receivers commonly store each message as one line of a file that a SIEM reads line by line. A
 * line break in a value a client chose (the user name of a failed login) must not draw a forged line
 * there: vigil's frames carry no control characters (RFC 5424 8.2), in structured data and message alike.
 */

/** RFC 6587 octet counting: `LEN SP MSG` repeated, LEN in bytes. */
function parseOctetCounted(buf: Buffer): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < buf.length) {
    const sp = buf.indexOf(0x20, i);
    const len = Number(buf.subarray(i, sp).toString());
    out.push(buf.subarray(sp + 1, sp + 1 + len).toString('utf8'));
    i = sp + 1 + len;
  }
  return out;
}

async function syslogReceiver() {
  const messages: string[] = [];
  const server = net.createServer((s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => {
      messages.push(...parseOctetCounted(Buffer.concat(chunks)));
      s.end();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, messages, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('syslog notifier: client-chosen values stay on one line', () => {
  it('a user name with a line break and a forged syslog header arrives as one line, trigger and resolve', async () => {
    const rx = await syslogReceiver();
    cleanups.push(rx.close);
    const tg: TestGateway = await startTestGateway(
      {
        ssh: { enabled: false },
        mysql: { enabled: false },
        postgres: { enabled: false },
        notifiers: [{ name: 'siem', kind: 'syslog', host: '127.0.0.1', port: rx.port, backoff_initial: '50ms', timeout: '5s' }],
        alerts: [{ name: 'brute-force', match: { type: 'auth.failure' }, group_by: ['actor.user'], window: '300ms', notify: ['siem'] }],
      },
      tempDir('vigil-review2-syslog-'),
    );
    cleanups.push(() => tg.stop());
    const forged = '<110>1 2026-12-08T00:00:00Z gw vigil 1 alert.resolved [vigil@32473 rule="brute-force"] all clear';
    const user = `mallory\n${forged}\r\u0000x`;
    await tg.gw.services.events.emit({ type: 'auth.failure', outcome: 'failure', actor: { user, roles: [] }, source: { ip: '192.0.2.9', port: 1 }, target: { name: 'db', protocol: 'postgres' } });

    await waitFor(() => rx.messages.length === 2, 15_000, 'trigger and resolve');
    for (const m of rx.messages) {
      expect(m).not.toMatch(/[\u0000-\u001f\u007f]/);
      expect(m.split('\n')).toHaveLength(1);
    }
    const [trigger, resolve] = rx.messages;
    // Still the whole value, readable, with the line break shown as a space.
    expect(trigger).toMatch(/^<108>1 \S+ \S+ vigil \d+ alert\.fired \[vigil@32473 rule="brute-force" alert_id="[^"]+" count="1" threshold="1" actor\.user="mallory <110>1 /);
    expect(trigger).toContain('all clear x"]');
    expect(resolve).toMatch(/ alert\.resolved \[vigil@32473 rule="brute-force" /);
  });
});
