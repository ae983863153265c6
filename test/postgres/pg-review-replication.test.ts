import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { startWorld, type PgWorld } from './helpers.ts';

/**
 * A replication connection (a walsender) is never relayed: its stream (logical changes of every table,
 * BASE_BACKUP of the whole cluster) is not statements vigil can record, and a physical one ignores the
 * database vigil authorized. It is refused whatever `blocked_startup_params` lists: an operator who
 * blocks some other parameter must not open replication by doing so.
 */
let w: PgWorld;
beforeAll(async () => {
  w = await startWorld({ postgres: { listen: '127.0.0.1:0', blocked_startup_params: ['search_path'] } });
  // The backend login role may replicate: only vigil stands between the engineer and a walsender.
  w.pg.psql('ALTER ROLE trust_user REPLICATION');
});
afterAll(async () => {
  await w?.stop();
});

describe('postgres proxy: replication connections', () => {
  it('refuses replication=database and replication=true even when blocked_startup_params does not list it', async () => {
    for (const value of ['database', 'true', 'on', '1']) {
      const r = await w.psql(['-qAt', '-c', 'IDENTIFY_SYSTEM'], { conn: w.conn('pg-trust', `replication=${value}`) });
      expect(r.code, `replication=${value}: ${r.stdout}`).not.toBe(0);
      expect(r.stderr).toMatch(/replication connections are not allowed/);
    }
    const walsenders = w.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender'");
    expect(walsenders).toBe('0');
  });

  it('still accepts replication=false (an ordinary connection)', async () => {
    const r = await w.psql(['-qAt', '-c', 'SELECT 7'], { conn: w.conn('pg-trust', 'replication=false') });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('7');
  });
});
