import { describe, it, expect, afterAll } from 'vitest';
import { startWorld as startPg, type PgWorld } from '../postgres/helpers.ts';
import { startWorld as startMy, type MyWorld } from '../mysql/helpers.ts';
import { runCliCaptured } from '../support/cli.ts';

/**
 * `audit search --text` over what the stock clients really send through the proxies (not hand-made events):
 * Postgres records the statement as `details.sql`, MySQL as `details.query`, and both must be found.
 */
let pg: PgWorld | undefined;
let my: MyWorld | undefined;
afterAll(async () => {
  await pg?.stop();
  await my?.stop();
});

async function textSearch(dataDir: string, text: string): Promise<{ type: string; details: Record<string, unknown> }[]> {
  const r = await runCliCaptured(['audit', 'search', '--text', text, '--type', 'db.query', '--data', dataDir, '--json']);
  expect(r.code, r.err).toBe(0);
  return r.out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('audit search --text finds the SQL of real database sessions', () => {
  it('psql through vigil: the statement is found by a word in it', async () => {
    pg = await startPg();
    const r = await pg.psql(['-qAt', '-c', "SELECT 'zebra_marker_pg' AS animal_pg"]);
    expect(r.stdout.trim()).toBe('zebra_marker_pg');
    await pg.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.sql).includes('zebra_marker_pg'));
    const found = await textSearch(pg.tg.dataDir, 'animal_pg');
    expect(found).toHaveLength(1);
    expect(found[0]!.details.sql).toBe("SELECT 'zebra_marker_pg' AS animal_pg");
  }, 120_000);

  it('the mariadb client through vigil: the statement is found by a word in it', async () => {
    my = await startMy();
    const r = await my.cli(['--user=db', '-N', '-e', "SELECT 'zebra_marker_my' AS animal_my"]);
    expect(r.stdout.trim()).toBe('zebra_marker_my');
    await my.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.query).includes('zebra_marker_my'));
    const found = await textSearch(my.tg.dataDir, 'animal_my');
    expect(found).toHaveLength(1);
    expect(found[0]!.details.query).toBe("SELECT 'zebra_marker_my' AS animal_my");
  }, 120_000);
});
