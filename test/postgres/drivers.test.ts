import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { runPeers, startPeerWorld, type PeerWorld, type PeerRow } from './drivers/peers.ts';
import { peerValues, expectSameResults } from '../support/peers.ts';

/**
 * Driver transparency (issue 17): psycopg 3, pgjdbc, node-postgres and pg_dump/pg_restore run the same
 * workload direct and through vigil and must print the same results. The side-by-side table is
 * bench/peers/postgres.ts; this is the CI subset (each driver once, one round).
 */
let w: PeerWorld;
beforeAll(async () => {
  w = await startPeerWorld();
});
afterAll(async () => {
  await w?.stop();
});
const peers = (drivers: Parameters<typeof runPeers>[0]['drivers']) => runPeers({ direct: w.direct, vigil: w.vigil, work: w.work, dump: w.dump, drivers });

const values = peerValues;
const expectSame = (rows: PeerRow[]) => expectSameResults(rows, 1);

describe('postgres drivers: same results direct and through vigil', () => {
  it('psycopg 3: pipeline mode, binary COPY, named cursors, prepared binary statements', async () => {
    const rows = await peers(['psycopg']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ backend_pid_is_real: 'true', pipeline: '[20,210]', pipeline_error: '"23505"', copy_in_rows: '500', named_cursor: expect.stringMatching(/^\[5,495,/) });
    // The pipelined INSERTs were each recorded.
    expect(w.tg.events.filter((e) => e.type === 'db.query' && String(e.details.sql).startsWith('INSERT INTO items VALUES ($1, $2, $3)')).length).toBeGreaterThanOrEqual(20);
  });

  it('pgjdbc (key as DER PKCS#8): server-prepared statements, batches, fetch size, CopyManager, cancel', async () => {
    const rows = await peers(['pgjdbc']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({
      backend_pid_is_real: 'true', server_prepared_used: 'true', batch_updates: '250', batch_error: '23505', fetch_size_rows: '250/31375', copy_in: '300', cancel: '57014', after_cancel: '550',
    });
    await w.tg.waitForEvent((e) => e.type === 'db.cancel' && e.outcome === 'success');
    await w.tg.waitForEvent((e) => e.type === 'db.query' && e.details.suspended === true);
  });

  it('pgjdbc with the PKCS#12 file (sslkey=alice.p12, empty password) gets the same results', async () => {
    const rows = await runPeers({ direct: w.direct, vigil: { ...w.vigil, jdbcUrl: w.vigilJdbcP12Url }, work: w.work, drivers: ['pgjdbc'] });
    expectSame(rows);
    expect(values(rows).backend_pid_is_real).toBe('true');
  });

  it('node-postgres: real pid (NOTIFY from self), named statements, binary results', async () => {
    const rows = await peers(['node-postgres']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ backend_pid_is_real: 'true', notify_from_self: 'true', error: '22012' });
  });

  it('pg_dump -Fc / pg_restore round trip: the restored database dumps the same as the original', async () => {
    const rows = await peers(['pg_dump']);
    expectSame(rows);
    expect(values(rows).restored_dumps_the_same).toBe('true');
  });
});
