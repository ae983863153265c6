import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, expect, test } from 'vitest';
import pino from 'pino';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { runCliCaptured } from '../support/cli.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Some secrets may sit in the config file itself (a Slack webhook URL, a witness URL with credentials).
 * An operator who breaks the YAML on exactly that line (rotating the URL, a missing closing quote) must
 * not get it copied into the signed audit log (config.reload_failed), the reload answer, the log, or
 * `vigil config check` / `vigil doctor`: the error says where, not what the line holds.
 */
const TOKEN = 'slackTokenXq81Zr4';
const broken = (url: string) =>
  ['data_dir: ./data', 'notifiers:', '  - name: chat', '    kind: slack', `    url: "${url}`, ''].join('\n');

let tg: TestGateway | undefined;
afterAll(async () => {
  await tg?.stop();
});

test('a YAML error on a line holding a secret names the line, not its content', async () => {
  const base = tempDir('vigil-secrets-yaml-');
  const configFile = path.join(base, 'vigil.yaml');
  const lines: string[] = [];
  const log = pino({ level: 'trace' }, new Writable({ write(c, _e, cb) { lines.push(c.toString()); cb(); } }));
  tg = await startTestGateway({}, base, { log, configFile });
  fs.writeFileSync(configFile, broken(`https://hooks.slack.com/services/T0/B0/${TOKEN}`));

  const report = await tg.gw.reload({ via: 'test' });
  expect(report.ok).toBe(false);
  expect(report.error!.message).toMatch(/at line \d+, column \d+/);
  expect(JSON.stringify(report)).not.toContain(TOKEN);
  const failed = await tg.waitForEvent((e) => e.type === 'config.reload_failed');
  expect(JSON.stringify(failed)).not.toContain(TOKEN);
  expect(lines.join('')).not.toContain(TOKEN);

  const check = await runCliCaptured(['config', 'check', '--config', configFile]);
  expect(check.code).not.toBe(0);
  expect(check.err + check.out).toMatch(/at line \d+, column \d+/);
  expect(check.err + check.out).not.toContain(TOKEN);
  const doctor = await runCliCaptured(['doctor', '--json', '--config', configFile]);
  expect(doctor.err + doctor.out).toMatch(/at line \d+, column \d+/);
  expect(doctor.err + doctor.out).not.toContain(TOKEN);
}, 60_000);
