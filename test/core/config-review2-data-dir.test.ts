import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * A reload never moves the data directory (the audit log, keys and recordings are open there). A file that
 * now names another one is not silently ignored: the reload says a restart is needed, in its answer and
 * in config.reloaded, and the gateway keeps writing where it was.
 */

let tg: TestGateway;
let base: string;
let configFile: string;
let doc: Record<string, any>;

beforeAll(async () => {
  base = tempDir('vigil-review2-data-dir-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway({}, base, { configFile });
  doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
});

afterAll(async () => {
  await tg?.stop();
});

it('an unchanged data_dir (relative in the file, resolved against it) reports nothing', async () => {
  fs.writeFileSync(configFile, JSON.stringify({ ...doc, data_dir: './data' }));
  expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true, restart_required: [] });
});

it('a data_dir moved in the file is reported as needing a restart and the running one is kept', async () => {
  const running = tg.gw.services.dataDir;
  fs.writeFileSync(configFile, JSON.stringify({ ...doc, data_dir: './elsewhere' }));
  const report = await tg.gw.reload({ via: 'test' });
  expect(report.ok).toBe(true);
  expect(report.restart_required).toEqual([expect.objectContaining({ key: 'data_dir', why: expect.stringContaining(path.join(base, 'elsewhere')) })]);
  expect(tg.gw.services.dataDir).toBe(running);
  expect(tg.gw.services.config.data_dir).toBe(running);
  const reloaded = await tg.waitForEvent((e) => e.type === 'config.reloaded' && JSON.stringify(e.details).includes('"data_dir"'));
  expect(JSON.stringify(reloaded.details)).toContain('elsewhere');
});
