import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * A few YAML parser messages quote the source they stumbled on (an alias name, a block scalar header).
 * When that source is an inline secret (a Slack webhook URL after a mistyped `*` or `|`), the message must
 * still say where, never what: it reaches the reload answer and the signed config.reload_failed event.
 */
const TOKEN = 'slackTokenQw73Lp2';
const withUrlLine = (line: string) => ['data_dir: ./data', 'notifiers:', '  - name: chat', '    kind: slack', `    url: ${line}`, ''].join('\n');

let tg: TestGateway;
let configFile: string;

beforeAll(async () => {
  const base = tempDir('vigil-review2-yaml-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway({}, base, { configFile });
});

afterAll(async () => {
  await tg?.stop();
});

it.each([
  ['an alias marker typed for the opening quote', `*https://hooks.slack.com/services/T0/B0/${TOKEN}"`],
  ['a block scalar header run into the value', `|https://hooks.slack.com/services/T0/B0/${TOKEN}`],
  ['a folded block scalar header run into the value', `>-https://hooks.slack.com/services/T0/B0/${TOKEN}`],
])('%s: the reload is refused naming the line, not the secret', async (_what, line) => {
  fs.writeFileSync(configFile, withUrlLine(line));
  const seen = tg.events.length;
  const report = await tg.gw.reload({ via: 'test' });
  expect(report.ok).toBe(false);
  expect(report.error!.message).toMatch(/at line 5, column \d+/);
  expect(JSON.stringify(report)).not.toContain(TOKEN);
  const failed = await tg.waitForEvent((e) => e.type === 'config.reload_failed' && tg.events.indexOf(e) >= seen);
  expect(JSON.stringify(failed)).not.toContain(TOKEN);
});

it('an alias bomb ("billion laughs") and duplicate keys are refused with their position, the running config kept', async () => {
  const running = tg.gw.services.config;
  const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]', ...'bcdefghij'.split('').map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcdefghij'[i]}`).join(',')}]`), 'data_dir: ./data', ''].join('\n');
  fs.writeFileSync(configFile, bomb);
  const report = await tg.gw.reload({ via: 'test' });
  expect(report).toMatchObject({ ok: false, error: { code: 'VIGIL_CONFIG_INVALID' } });
  expect(report.error!.message).toMatch(/resource exhaustion/);
  fs.writeFileSync(configFile, 'data_dir: ./data\nlog: { level: info }\nlog: { level: debug }\n');
  expect((await tg.gw.reload({ via: 'test' })).error!.message).toMatch(/Map keys must be unique at line 3, column 1/);
  expect(tg.gw.services.config).toBe(running);
});
