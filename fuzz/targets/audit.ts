import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { verifyAuditLog, searchAuditLog } from '../../recorder/audit/index.ts';
import { recordsOf } from '../../recorder/audit/read.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { FIXTURES, fixtureAuditKey, scratchDir } from '../engine/scratch.ts';

const SEGMENT = 'seg-0000000000000001-20260101.jsonl';
const fixtureFile = fileURLToPath(new URL('audit-segment.jsonl', FIXTURES));
const original = fs.existsSync(fixtureFile) ? fs.readFileSync(fixtureFile) : Buffer.alloc(0);
const { publicPem } = fixtureAuditKey();
const dir = scratchDir('audit');

/** The records of a segment as parsed values, one canonical string per line that parses. */
function parsedLines(b: Buffer): string[] {
  const out: string[] = [];
  for (const line of b.toString('utf8').split('\n')) {
    try {
      out.push(JSON.stringify(JSON.parse(line)));
    } catch {
      out.push(`unparsed:${line}`);
    }
  }
  return out;
}
const originalLines = parsedLines(original);

/**
 * A segment file of the audit log, mutated: the offline verifier and the readers (search, line
 * parser) must never throw, and the verifier must never call a log `ok` whose records differ from the
 * signed original (a cut at a record boundary is the one change it cannot see without head.json or a
 * witness).
 */
export const target: FuzzTarget = {
  name: 'audit',
  covers: ['recorder/audit/'],
  maxLen: 16384,
  dictionary: ['{"seq":', '"prev":"', '"hash":"', '"checkpoint"', '"sig":"', '\n', '"event":{', '"type":"db.query"', '0000000000000000000000000000000000000000000000000000000000000000'],
  async run(data) {
    fs.writeFileSync(path.join(dir, SEGMENT), data);
    const res = verifyAuditLog(dir, publicPem);
    if (res.ok) {
      const got = parsedLines(data).filter((l) => l !== 'unparsed:');
      const want = originalLines.filter((l) => l !== 'unparsed:');
      check(got.length <= want.length && got.every((l, i) => l === want[i]), `a modified segment verified ok (${res.status}, ${res.records} records)`);
    }
    for (const r of recordsOf(data.toString('utf8'))) check(typeof r.line === 'string', 'record without its line');
    await searchAuditLog(dir, { user: 'alice', type: 'db.', limit: 5, hideCheckpoints: true });
  },
};
