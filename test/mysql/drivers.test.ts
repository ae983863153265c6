import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { runPeers, startPeerWorld, type PeerWorld } from './drivers/peers.ts';
import type { PeerRow } from '../../bench/peers/compare.ts';
import { peerValues, expectSameResults } from '../support/peers.ts';

/**
 * Driver transparency (issue 17): PyMySQL, mysqlclient (TLS client certificate), MariaDB Connector/J and a
 * mariadb-dump round trip run the same workload direct to MariaDB and through vigil and must print the same
 * results, and so must mysql2's JSON columns. The side-by-side table of every client (and mariadb-test-run) is
 * bench/peers/mysql.ts; the mariadb CLI and sysbench are covered by transparency.test.ts and sysbench.test.ts.
 */
let w: PeerWorld;
beforeAll(async () => {
  w = await startPeerWorld();
}, 120_000);
afterAll(async () => {
  await w?.stop();
});

const values = peerValues;
const expectSame = (rows: PeerRow[]) => expectSameResults(rows, 3);

describe('mysql drivers: same results direct and through vigil', () => {
  it('PyMySQL: executemany, JSON and binary columns, rollback, errors, streaming cursor', async () => {
    const rows = await runPeers(w, ['pymysql']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ executemany_rowcount: '50', after_rollback: '50', duplicate_error: '1062', streamed: '[20000,2666866670000]' });
    await w.tg.waitForEvent((e) => e.type === 'db.query' && String(e.details.query).startsWith('INSERT INTO dbapi_pymysql VALUES'));
  });

  it('mysqlclient (libmariadb, TLS client certificate): the same workload', async () => {
    const rows = await runPeers(w, ['mysqlclient']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ executemany_rowcount: '50', missing_table_error: expect.stringContaining('1146') });
  });

  it('MariaDB Connector/J: isolation level (MariaDB, not MySQL 8), server-prepared batches, fetch size, errors', async () => {
    const rows = await runPeers(w, ['connector-j']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ isolation: '2', batch: '200', fetch_size_rows: '50000/1250025000', error: '1146/42S02', session: 'READ-COMMITTED/1' });
  });

  it('mysql2: a JSON column arrives parsed, as direct (MariaDB extended type info passes), JSON parameters, prepared statements', async () => {
    const rows = await runPeers(w, ['mysql2']);
    expectSame(rows);
    expect(JSON.parse(values(rows).json_column)).toEqual([{ doc: { i: 3, tags: ['a', 'é'] }, type: 'OBJECT' }]);
    expect(values(rows)).toMatchObject({ json_parameters: '[{"a":"x","l":3}]', prepared_error: '1146/42S02' });
  });

  it('mariadb-dump through vigil, restored through vigil, dumps the same as the original (and as direct)', async () => {
    const rows = await runPeers(w, ['mariadb-dump']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ restored_dumps_the_same: 'true', dump_has_routines: 'true' });
  });
});
