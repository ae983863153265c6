import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, it, expect } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { createEvent } from '../../src/events/envelope.ts';
import { openAuditLog, searchAuditLog, searchIndexed, searchIndexedStream, verifyAuditLog, AuditIndex, INDEX_FILE, type AuditQuery } from '../../recorder/audit/index.ts';
import { auditOptions, makeSigningKey } from './helpers.ts';

/**
 * A log of 40 statements over several segments (mallory's are 7 and 31, the last segment's among them),
 * indexed by a first search. Returns the data dir, the audit dir and the public key.
 */
async function indexedLog(): Promise<{ data: string; audit: string; pub: Buffer }> {
  const data = tempDir();
  const key = makeSigningKey(path.join(data, 'ca'));
  const audit = path.join(data, 'audit');
  const w = await openAuditLog(audit, auditOptions(key.keyFile, { segmentMaxBytes: 3000 }));
  for (let i = 0; i < 40; i++) {
    const mallory = i === 7 || i === 31;
    await w.append(createEvent({
      type: 'db.query', outcome: 'success',
      actor: { user: mallory ? 'mallory' : 'alice', roles: [] }, source: { ip: '10.0.0.1' },
      target: { name: 'db', protocol: 'postgres' }, details: { sql: mallory ? `DROP TABLE payroll_${i}` : 'SELECT 1' },
    }));
  }
  await w.close();
  expect(searchIndexed(audit, { user: 'mallory' })).toHaveLength(2);
  return { data, audit, pub: fs.readFileSync(key.pubFile) };
}

/** Delete rows from index.sqlite behind vigil's back; returns how many went. */
function deleteRows(audit: string, where: string): number {
  const db = new Database(path.join(audit, INDEX_FILE));
  try {
    return db.prepare(`DELETE FROM events WHERE ${where}`).run().changes;
  } finally {
    db.close();
  }
}

const MALLORY: AuditQuery = { user: 'mallory' };
const sqlOf = (records: { event: { details?: Record<string, unknown> } }[]) => records.map((r) => r.event.details?.sql);

describe('rows deleted from the search index', () => {
  it('do not shorten a search: the segments are indexed again, and that is said', async () => {
    const { audit } = await indexedLog();
    const scan = (await searchAuditLog(audit, MALLORY)).records;
    expect(deleteRows(audit, "user = 'mallory'")).toBe(2);
    const notices: string[] = [];
    const found = searchIndexed(audit, MALLORY, { notice: (m) => notices.push(m) });
    expect(sqlOf(found)).toEqual(['DROP TABLE payroll_7', 'DROP TABLE payroll_31']);
    expect(found.map((r) => r.seq)).toEqual(scan.map((r) => r.seq));
    expect(notices).toHaveLength(1);
    expect(notices[0]).toMatch(/lacks 2 record\(s\) of segments seg-\S+ \(seq \d+\.\.\d+: \d+ of \d+ rows\)/);
    // Repaired: the next search finds nothing missing and says nothing.
    expect(sqlOf(searchIndexed(audit, MALLORY, { notice: (m) => notices.push(m) }))).toHaveLength(2);
    expect(notices).toHaveLength(1);
    const index = AuditIndex.open(audit);
    try {
      expect(index.gaps()).toEqual([]);
    } finally {
      index.close();
    }
  });

  it('do not shorten a streamed search, a text search or a limited one, even when the newest rows went', async () => {
    const { audit } = await indexedLog();
    const last = (await searchAuditLog(audit, {})).records.at(-1)!.seq;
    // The newest rows: the follower only indexes past the highest indexed seq, so it would never bring them back.
    expect(deleteRows(audit, `seq > ${last - 12}`)).toBe(12);
    const notices: string[] = [];
    expect(sqlOf([...searchIndexedStream(audit, MALLORY, { notice: (m) => notices.push(m) })])).toEqual(['DROP TABLE payroll_7', 'DROP TABLE payroll_31']);
    expect(notices).toHaveLength(1);
    deleteRows(audit, "user = 'mallory'");
    expect(sqlOf(searchIndexed(audit, { text: 'payroll_31' }, { notice: (m) => notices.push(m) }))).toEqual(['DROP TABLE payroll_31']);
    deleteRows(audit, "user = 'mallory'");
    expect(sqlOf(searchIndexed(audit, { ...MALLORY, limit: 1 }, { notice: (m) => notices.push(m) }))).toEqual(['DROP TABLE payroll_31']);
    expect(notices).toHaveLength(3);
  });

  it('make verify report the incomplete index and exit 1, saying to rebuild it', async () => {
    const { data, audit, pub } = await indexedLog();
    expect(verifyAuditLog(audit, pub).searchIndex).toEqual({ checked: true, ok: true, gaps: [] });
    expect(deleteRows(audit, "user = 'mallory'")).toBe(2);
    const res = verifyAuditLog(audit, pub);
    expect(res.status).toBe('unwitnessed'); // the log itself is intact
    expect(res.searchIndex).toMatchObject({ checked: true, ok: false });
    expect(res.searchIndex!.gaps.reduce((n, g) => n + g.expected - g.rows, 0)).toBe(2);
    const cli = await runCliCaptured(['audit', 'verify', '--data', data]);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/search index INCOMPLETE: index\.sqlite lacks 2 record\(s\) of segments .*vigil audit index rebuild/);
    // Verify only reads: the index is left as it was.
    expect(verifyAuditLog(audit, pub).searchIndex?.ok).toBe(false);
    expect((await runCliCaptured(['audit', 'index', 'rebuild', '--data', data])).code).toBe(0);
    const after = await runCliCaptured(['audit', 'verify', '--data', data]);
    expect(after.code).toBe(3);
    expect(after.err).not.toContain('search index');
  });

  it('are reported on stderr by `vigil audit search`, which still prints every match', async () => {
    const { data, audit } = await indexedLog();
    deleteRows(audit, "user = 'mallory'");
    const cli = await runCliCaptured(['audit', 'search', '--data', data, '--user', 'mallory', '--json']);
    expect(cli.code).toBe(0);
    expect(cli.out.trim().split('\n').map((l) => JSON.parse(l).details.sql)).toEqual(['DROP TABLE payroll_7', 'DROP TABLE payroll_31']);
    expect(cli.err).toMatch(/^vigil audit search: the search index lacks 2 record\(s\)/m);
  });
});
