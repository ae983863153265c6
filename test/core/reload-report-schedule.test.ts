import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ReportModel } from '../../recorder/reports/model.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/** A scheduled access review run after a config reload maps roles to targets by the reloaded policy. */

let tg: TestGateway;
afterAll(async () => {
  await tg?.stop();
});

describe('scheduled reports after a config reload', () => {
  it('use the role → target map in force when they run', async () => {
    const base = tempDir('vigil-reload-reports-');
    const configFile = path.join(base, 'vigil.yaml');
    tg = await startTestGateway(
      {
        ssh: { enabled: false }, postgres: { enabled: false }, mysql: { enabled: false },
        targets: [
          { name: 'pg-a', protocol: 'postgres', host: '127.0.0.1', port: 5432, user: 'app' },
          { name: 'pg-b', protocol: 'postgres', host: '127.0.0.1', port: 5433, user: 'app' },
        ],
        roles: [{ name: 'ops', targets: ['pg-a'] }, { name: 'admin' }],
        reports: { schedules: [{ name: 'review', schedule: '@every 2s', period: '1d', format: 'json' }] },
      },
      base,
      { configFile },
    );
    await tg.issue({ user: 'alice', roles: ['ops'] });
    const doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    doc.roles = [{ name: 'ops', targets: ['pg-b'] }, { name: 'admin' }];
    fs.writeFileSync(configFile, JSON.stringify(doc));
    expect(await tg.gw.reload({ via: 'test' })).toMatchObject({ ok: true, roles: { changed: ['ops'] } });
    const reloadedAt = Date.now();
    // A run due after the reload began after it.
    const ev = await tg.waitForEvent((e) => e.type === 'report.generated' && e.outcome === 'success' && Date.parse(e.details.until as string) > reloadedAt, 60_000);
    const model = JSON.parse(fs.readFileSync(ev.details.out as string, 'utf8')) as ReportModel;
    const alice = model.access.find((r) => r.user === 'alice');
    expect(alice).toMatchObject({ roles: ['ops'], targets: ['pg-b'] });
  }, 120_000);
});
