/**
 * CPU per record of the local search index catching up on a copy of a real audit log (one a bench run
 * kept with VIGIL_BENCH_KEEP_AUDIT=DIR), in the follower's slices:
 *
 *   VIGIL_BENCH_NO_INDEX=1 VIGIL_BENCH_KEEP_AUDIT=/tmp/audit npm run bench:postgres -- --routes vigil --rounds 1
 *   npm run bench:index-cost -- --audit /tmp/audit [--batch 2000] [--rounds 3]
 *
 * Each round indexes a fresh copy (the log's own files are never touched) and prints CPU µs per record,
 * user and system, and the index's size.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AuditIndex } from '../recorder/audit/search-index.ts';
import { median } from './stats.ts';

const { values } = parseArgs({ options: { audit: { type: 'string' }, batch: { type: 'string', default: '2000' }, rounds: { type: 'string', default: '3' } } });
if (!values.audit) {
  console.error('--audit DIR is required: an audit directory to index a copy of (see the header of bench/index-cost.ts)');
  process.exit(2);
}
const src = values.audit;
const batch = Number(values.batch);
const rounds: number[] = [];
for (let r = 0; r < Number(values.rounds); r++) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-index-cost-'));
  for (const f of fs.readdirSync(src)) if (f.startsWith('seg-') || f === 'head.json') fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const index = AuditIndex.open(dir);
  const c0 = process.cpuUsage();
  let added = 0;
  for (;;) {
    const res = index.catchUp({ maxRecords: batch });
    added += res.added;
    if (res.done) break;
  }
  const c = process.cpuUsage(c0);
  index.close();
  const us = (c.user + c.system) / added;
  rounds.push(us);
  console.log(`round ${r + 1}: ${added} records, ${us.toFixed(2)} µs/record (user ${(c.user / added).toFixed(2)}, sys ${(c.system / added).toFixed(2)}), index ${(fs.statSync(path.join(dir, 'index.sqlite')).size / 1048576).toFixed(0)} MiB`);
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(`median ${median(rounds).toFixed(2)} µs/record, load ${os.loadavg()[0].toFixed(1)}`);
