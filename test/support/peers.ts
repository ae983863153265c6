import { expect } from 'vitest';
import { formatTable, type PeerRow } from '../../bench/peers/compare.ts';

/** The CI subsets of bench/peers: each check's value through vigil, by check name. */
export const peerValues = (rows: PeerRow[]) => Object.fromEntries(rows.map((r) => [r.check, r.vigil]));

/** Every check the same direct and through vigil, no workload that failed to run, at least `minRows` checks. */
export function expectSameResults(rows: PeerRow[], minRows: number): void {
  expect(rows.filter((r) => !r.same), `\n${formatTable(rows)}`).toEqual([]);
  expect(rows.find((r) => r.check === 'run'), `\n${formatTable(rows)}`).toBeUndefined();
  expect(rows.length).toBeGreaterThanOrEqual(minRows);
}
