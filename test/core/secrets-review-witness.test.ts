import { Writable } from 'node:stream';
import { afterEach, expect, test } from 'vitest';
import pino from 'pino';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { httpReceiver } from '../support/http-receiver.ts';
import { freePort, waitFor } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';

/**
 * The witness endpoint is written to by the gateway, so it is protected by a credential, and the only
 * place audit.witness.url can carry one is the URL itself (basic auth user:password@, or a token in the
 * query). The operational log must never quote it.
 */
const PASSWORD = 'witness-pw-7f3a9c';
const TOKEN = 'witness-token-5d2e81';

let gw: TestGateway | undefined;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await gw?.stop();
  gw = undefined;
  for (const c of closers.splice(0)) await c();
});

function capturedLog() {
  const lines: string[] = [];
  const log = pino({ level: 'trace' }, new Writable({ write(c, _e, cb) { lines.push(c.toString()); cb(); } }));
  return { log, lines };
}

test('a witness URL with user:password@ publishes with basic auth and never logs the password', async () => {
  const receiver = await httpReceiver();
  closers.push(receiver.close);
  const url = receiver.url('/head').replace('http://', `http://vigil:${PASSWORD}@`);
  const { log, lines } = capturedLog();
  gw = await startTestGateway({ audit: { checkpoint_interval: '100ms', witness: { url } } }, undefined, { log });
  await gw.issue({ user: 'alice', roles: [] }); // a record, so a checkpoint follows
  // A signed head is published at each checkpoint: the receiver gets one, with the credential as a header.
  const got = await waitFor(() => receiver.accepted[0] ?? (lines.some((l) => l.includes('audit witness')) ? 'failed' : undefined), 20_000, 'a published head or a witness failure');
  expect(lines.join('')).not.toContain(PASSWORD);
  expect(got).not.toBe('failed');
  expect(receiver.accepted[0]!.headers.authorization).toBe(`Basic ${Buffer.from(`vigil:${PASSWORD}`).toString('base64')}`);
  expect(JSON.parse(receiver.accepted[0]!.body)).toHaveProperty('sig');

  // `vigil audit verify --witness URL` reads the same protected endpoint (this receiver answers no head);
  // what it says of the witness beyond echoing its own argument names it without the password.
  const before = receiver.accepted.length;
  const verify = await runCliCaptured(['audit', 'verify', '--data', gw.dataDir, '--witness', url]);
  expect((verify.out + verify.err).replaceAll(url, '<arg>')).not.toContain(PASSWORD);
  const read = receiver.accepted.slice(before).find((r) => r.body === '');
  expect(read?.headers.authorization).toBe(`Basic ${Buffer.from(`vigil:${PASSWORD}`).toString('base64')}`);
}, 60_000);

test('a witness that cannot be reached is logged by its origin, not by a URL carrying a token', async () => {
  const port = await freePort(); // nothing listens: every publication fails
  const { log, lines } = capturedLog();
  gw = await startTestGateway({ audit: { checkpoint_interval: '100ms', witness: { url: `http://127.0.0.1:${port}/head?token=${TOKEN}` } } }, undefined, { log });
  await gw.issue({ user: 'alice', roles: [] });
  const line = await waitFor(() => lines.find((l) => l.includes('audit witness: could not publish')), 20_000, 'the witness failure log line');
  expect(line).toContain(`127.0.0.1:${port}`);
  expect(line).not.toContain(TOKEN);
  expect(lines.join('')).not.toContain(TOKEN);
}, 60_000);
