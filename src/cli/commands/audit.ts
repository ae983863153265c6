import fs from 'node:fs';
import path from 'node:path';
import { UsageError, stringOpt, type Command, type CommandArgs, type OptionSpec } from '../command.ts';
import { dataDirFromArgs } from '../data-dir-arg.ts';
import { parseDuration } from '../../config/units.ts';
import { NotFoundError } from '../../errors.ts';
import { dataPaths } from '../../data-dir.ts';
import {
  verifyAuditLog, VERIFY_EXIT_CODES, type VerifyResult, searchAuditLog, tailAuditLog, formatEventRow, EVENT_ROW_HEADER, escapeTerminal, HEAD_FILE, type AuditQuery, type AuditRecord,
  searchIndexed, searchIndexedStream, AuditIndex, AuditIndexError,
} from '../../../recorder/audit/index.ts';
import { parseIsoBound } from '../../../recorder/audit/read.ts';
import type { SignedHead } from '../../../recorder/audit/record.ts';
import { readWitness } from '../../../recorder/audit/witness.ts';
import { searchShared, reindexShared, type SharedRecord } from '../../../recorder/audit/shared-index.ts';
import { verifySharedIndex, type SharedVerifyResult } from '../../../recorder/audit/verify-shared.ts';
import { catchUpLocal, openSharedAudit, toSharedQuery } from './audit-shared.ts';

/** The audit directory and public key of the data dir the command works on. */
export async function auditPaths(args: CommandArgs): Promise<{ dataDir: string; auditDir: string; publicKeyFile: string }> {
  const dataDir = await dataDirFromArgs(args);
  const paths = dataPaths(dataDir);
  return { dataDir, auditDir: paths.audit, publicKeyFile: paths.auditPublicKey };
}

/**
 * `2h`, `30m`, `1d` (that long ago) or an ISO 8601 / RFC 3339 time with a zone, read at the precision it is
 * written in as bundles and reports read it (parseIsoBound): an `--until` covers its whole last second,
 * minute or day (`--until 2026-11-30T23:59:59Z` reaches 23:59:59.999, and the until bound of a query covers
 * its whole millisecond: isoUntil), so a period ending there and the next one starting at 00:00:00 leave no
 * event out. A time of day without a zone is refused: it would be read in this host's zone.
 */
export function parseTimeArg(flag: string, text: string | undefined, now = Date.now()): Date | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms !== undefined && !/^\d+(\.\d+)?$/.test(text.trim())) return new Date(now - ms);
  let bound;
  try {
    bound = parseIsoBound(text, flag === 'until' ? 'until' : 'since');
  } catch (e) {
    throw new UsageError(`--${flag}: ${(e as Error).message}`);
  }
  if (!bound) throw new UsageError(`--${flag}: expected a duration like 2h or 30m, or an ISO time like 2026-01-31T12:00:00Z, got ${JSON.stringify(text)}`);
  return bound.date;
}

function positiveInt(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${flag}: expected a whole number, got ${JSON.stringify(text)}`);
  return n;
}

export function printRecords(args: CommandArgs, records: Iterable<AuditRecord>, json: boolean): void {
  let chunk = json ? '' : EVENT_ROW_HEADER + '\n';
  for (const r of records) {
    chunk += (json ? JSON.stringify(r.event) : formatEventRow(r.event)) + '\n';
    // One write per ~64 KiB, not per record: 10^5 results would otherwise be 10^5 write calls.
    if (chunk.length >= OUTPUT_CHUNK) {
      args.out.write(chunk);
      chunk = '';
    }
  }
  if (chunk) args.out.write(chunk);
}
const OUTPUT_CHUNK = 64 * 1024;

export const auditHeadCommand: Command = {
  name: 'audit head',
  withoutProxies: true,
  summary: 'Print the newest signed chain head as one JSON line, to keep outside this machine as a witness for `audit verify --witness`.',
  usage: '[--data DIR]',
  options: {},
  examples: ['audit head >> /mnt/witness/heads.jsonl'],
  async run(args) {
    const p = await auditPaths(args);
    const file = path.join(p.auditDir, HEAD_FILE);
    if (!fs.existsSync(file)) throw new NotFoundError(`no signed head yet in ${p.auditDir} (the writer signs one at its first checkpoint)`);
    const head = JSON.parse(fs.readFileSync(file, 'utf8')) as SignedHead;
    args.out.write(JSON.stringify({ seq: head.seq, head: head.head, sig: head.sig, key_id: head.key_id }) + '\n');
    return 0;
  },
};

const VERIFY_HELP = `
  Exit codes (say only what is proven):
    0  complete: intact, every record signed, and the last signed head is the witness's newest head
    1  invalid: tampered or damaged, no valid signed checkpoint, or a witnessed head the log does not reach
       (cut back or rolled back); also when the search index (index.sqlite) lacks rows it had indexed
       (fix: vigil audit index rebuild)
    2  usage error
    3  intact and signed up to the last checkpoint, completeness not proven (no --witness, or the witness
       holds an older head)
    4  unsealed tail: intact up to the last valid checkpoint, then N records no checkpoint signs (a crash
       tail, or records added by someone else; restarting the gateway seals a crash tail)
    5  unreadable (the log, key or witness could not be read)
  --witness FILE|URL: a file of signed heads (one JSON per line, e.g. from \`vigil audit head\` or
  audit.witness.file) or a URL answering GET with the newest head (audit.witness.url). Whether a writer is
  running is not taken into account (writer.lock can be written by anyone who can write the log).`;

export const auditVerifyCommand: Command = {
  name: 'audit verify',
  withoutProxies: true,
  summary: 'Verify the audit log offline (hashes, chain, sequence, segments, signed checkpoints, witnessed heads) with only the public key.',
  usage: '[--data DIR] [--key PUBLIC_KEY_PEM] [--witness FILE|URL]…\n' + VERIFY_HELP,
  options: {
    key: { type: 'string', arg: 'PEM', help: 'audit public key to verify with (default: the data dir\'s audit_signing.pub)' },
    witness: { type: 'string', arg: 'FILE|URL', multiple: true, help: 'signed heads kept elsewhere, to prove the log was not cut back' },
    local: { type: 'boolean', help: 'with a PostgreSQL store: verify only this data dir\'s log, not the shared index of every replica' },
  },
  examples: ['audit verify', 'audit verify --key audit_signing.pub --witness /mnt/witness/heads.jsonl'],
  async run(args) {
    const p = await auditPaths(args);
    const keyFile = stringOpt(args.values, 'key') ?? p.publicKeyFile;
    const unreadable = (what: string, e: unknown) => {
      args.err.write(`audit log UNREADABLE: ${what} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})\n`);
      return VERIFY_EXIT_CODES.unreadable;
    };
    let key: Buffer;
    try {
      key = fs.readFileSync(keyFile);
    } catch (e) {
      return unreadable(`cannot read the public key ${keyFile}`, e);
    }
    if (!fs.existsSync(p.auditDir)) return unreadable(`no audit log in ${p.dataDir}`, new Error('ENOENT'));
    const witnesses: { head: SignedHead; source: string }[] = [];
    for (const source of (args.values.witness as string[] | undefined) ?? []) {
      try {
        witnesses.push(...(await readWitness(source)));
      } catch (e) {
        return unreadable(`cannot read the witness ${source}`, e);
      }
    }
    const t0 = performance.now();
    let res: VerifyResult;
    try {
      res = verifyAuditLog(p.auditDir, key, { witnesses });
    } catch (e) {
      return unreadable(`cannot read ${p.auditDir}`, e);
    }
    const secs = ((performance.now() - t0) / 1000).toFixed(2);
    const summary = `${res.records} records in ${res.segments} segment(s), ${res.checkpoints} signed checkpoint(s)`;
    const b = res.firstBad;
    switch (res.status) {
      case 'invalid':
        args.err.write(
          `audit log INVALID: ${b!.problem}\n  first bad record: segment ${b!.segment || '-'}, line ${b!.line}, seq ${b!.seq} [${b!.kind}]\n` +
            `  (${res.records} records verified before it, ${secs} s)\n`,
        );
        break;
      case 'unsealed-tail':
        args.out.write(
          `audit log intact, ${res.tailRecords} record(s) after checkpoint: signed up to seq ${res.checkpointedSeq}, seq ${res.checkpointedSeq + 1}..${res.lastSeq} unsealed` +
            `${b?.kind === 'torn-tail' ? ' (and a partially written final line)' : ''}; a crash tail is sealed when the gateway restarts (${summary}, ${secs} s)\n`,
        );
        break;
      case 'unwitnessed':
        args.out.write(
          `audit log intact and signed up to seq ${res.checkpointedSeq}: completeness NOT proven (${res.witnessedSeq === undefined ? 'no witness given' : `the witness's newest head is seq ${res.witnessedSeq}`}) (${summary}, ${secs} s)\n`,
        );
        break;
      case 'complete':
        args.out.write(`audit log ok: complete up to the witnessed head seq ${res.witnessedSeq}, ${summary}, head seq ${res.lastSeq} (${secs} s)\n`);
        break;
    }
    // The search index is a copy, not the record; rows missing from it would shorten searches, so say so.
    const index = res.searchIndex;
    if (index && !index.ok) args.err.write(`search index ${index.checked ? 'INCOMPLETE' : 'not checked'}: ${index.problem}\n`);
    if (args.values.local !== true) {
      const shared = await openSharedAudit(args).catch((e: Error) => e);
      if (shared instanceof Error) return unreadable('cannot open the shared audit index', shared);
      if (shared) {
        let sres: SharedVerifyResult;
        try {
          await catchUpLocal(shared, args.err);
          sres = await verifySharedIndex(shared.chains, shared.local);
        } catch (e) {
          return unreadable('cannot read the shared audit index', e);
        } finally {
          await shared.close();
        }
        printSharedVerify(args, sres);
        if (!sres.ok) return VERIFY_EXIT_CODES.invalid;
      }
    }
    if (index?.checked && !index.ok) return VERIFY_EXIT_CODES.invalid;
    return VERIFY_EXIT_CODES[res.status];
  },
};

function printSharedVerify(args: CommandArgs, r: SharedVerifyResult): void {
  for (const c of r.chains) {
    const what = `chain ${c.replica} (${c.host}): ${c.rows} indexed record(s)${c.rows ? ` seq ${c.firstSeq}..${c.lastSeq}` : ''}, ${c.checkpoints} signed checkpoint(s), key ${c.keyIds.join(', ')}`;
    if (c.ok) args.out.write(`shared index ok: ${what}\n`);
    else args.err.write(`shared index INVALID: ${what}\n  ${c.firstBad!.problem} [${c.firstBad!.kind}, seq ${c.firstBad!.seq}]\n`);
  }
  const l = r.local;
  if (l) {
    if (l.ok) args.out.write(`shared index matches this replica's log (${l.replica}): ${l.compared} record(s) compared, ${l.notIndexed} not indexed yet\n`);
    else args.err.write(`shared index INVALID against this replica's log (${l.replica}): ${l.firstBad!.problem} [${l.firstBad!.kind}]\n`);
  }
}

/** The event filter every audit-reading command takes (search, export). */
export const AUDIT_FILTER_OPTIONS = {
  user: { type: 'string', arg: 'U', help: 'only events of this user' },
  target: { type: 'string', arg: 'T', help: 'only events on this target' },
  type: { type: 'string', arg: 'PREFIX', help: 'only event types starting with this, e.g. session. or db.query' },
  session: { type: 'string', arg: 'ID', help: 'only events of this session' },
  since: { type: 'string', arg: '2h|ISO', help: 'from this long ago or this time on' },
  until: { type: 'string', arg: '2h|ISO', help: 'up to this long ago or this time' },
} as const satisfies Record<string, OptionSpec>;

/** The query those options describe (times parsed, usage errors for bad ones). */
export function auditFilterQuery(values: CommandArgs['values']): AuditQuery {
  return {
    user: stringOpt(values, 'user'),
    target: stringOpt(values, 'target'),
    type: stringOpt(values, 'type'),
    session: stringOpt(values, 'session'),
    since: parseTimeArg('since', stringOpt(values, 'since')),
    until: parseTimeArg('until', stringOpt(values, 'until')),
  };
}

const SEARCH_HELP = `
  Filters use the search index (DATA/audit/index.sqlite), which first catches up with the log (and is
  rebuilt from it when missing or damaged); records are always read from the log itself.
  --text QUERY: full text over SQL statements, shell commands and file paths, in SQLite FTS5 syntax:
    words (all must occur: drop users), "exact phrase", prefix* (nginx*), OR, NOT, AND, NEAR(a b, 5);
    put text with punctuation in double quotes ('"pg_dump -t"'); a query FTS5 cannot parse is an error.
  --scan: read every segment instead of the index (no --text), e.g. to cross-check the index.
  With a PostgreSQL store (replicas), search reads the shared index of every replica's chain instead
  (first copying this replica's signed records into it; its newest unsigned records come from the local
  index): --replica ID narrows to one chain, --local searches only this data dir's log as above. There
  --text uses PostgreSQL web-search syntax: words (all must occur), "exact phrase", OR, -word.`;

export const auditSearchCommand: Command = {
  name: 'audit search',
  withoutProxies: true,
  summary: 'Search audit events (a table, or one JSON event per line with --json); --text searches statements, commands and paths.',
  usage: '[--user U] [--target T] [--type PREFIX] [--session ID] [--since 2h|ISO] [--until 2h|ISO] [--text QUERY] [--json] [--limit N] [--scan]\n' + SEARCH_HELP,
  options: {
    ...AUDIT_FILTER_OPTIONS,
    text: { type: 'string', arg: 'QUERY', help: 'full text over statements, commands and file paths (SQLite FTS5 syntax, see below)' },
    scan: { type: 'boolean', help: 'read every log segment instead of the index (cross-check; not with --text)' },
    limit: { type: 'string', arg: 'N', help: 'at most N events (the newest ones)' },
    json: { type: 'boolean' },
    replica: { type: 'string', arg: 'ID', help: 'with a PostgreSQL store: only events of this replica\'s chain' },
    local: { type: 'boolean', help: 'with a PostgreSQL store: only this data dir\'s log (the local index), not every replica' },
  },
  examples: ['audit search --user alice --since 2h', 'audit search --type db.query --target prod-pg --limit 20 --json'],
  async run(args) {
    const p = await auditPaths(args);
    const text = stringOpt(args.values, 'text');
    const q: AuditQuery = {
      ...auditFilterQuery(args.values),
      limit: positiveInt('limit', stringOpt(args.values, 'limit')),
      // Checkpoints are shown when asked for (--type audit); otherwise they would drown the table.
      hideCheckpoints: true,
    };
    const replica = stringOpt(args.values, 'replica');
    const indexOpts = { notice: (m: string) => args.err.write(`vigil audit search: ${m}\n`) };
    if (args.values.scan !== true && args.values.local !== true) {
      if (text !== undefined && text.trim() === '') throw new UsageError('--text: empty query');
      const shared = await openSharedAudit(args).catch((e: unknown) => {
        // The database away: this replica's own log still answers (said on stderr, so nobody takes it for all).
        if ((e as { code?: unknown }).code !== 'VIGIL_STORE_UNAVAILABLE' || replica !== undefined) throw e;
        args.err.write(`vigil audit search: the shared index is unavailable (${(e as Error).message}); searching this replica's log only\n`);
        return undefined;
      });
      if (shared) {
        try {
          const indexedSeq = await catchUpLocal(shared, args.err);
          const local = shared.local;
          const tail =
            local && text === undefined && fs.existsSync(local.auditDir) ? { replica: local.replica, indexedSeq, records: () => searchIndexed(local.auditDir, q, indexOpts) } : undefined;
          const res = await searchShared(shared.chains, toSharedQuery(q, { replica, text }), tail);
          if (res.mismatched) args.err.write(`vigil audit search: ${res.mismatched} indexed record(s) left out: their bytes do not match their hash (run \`vigil audit verify\`)\n`);
          printSharedRecords(args, res.records, args.values.json === true);
          return 0;
        } finally {
          await shared.close();
        }
      }
    }
    if (replica !== undefined) throw new UsageError('--replica needs the shared index (store: postgres), without --local or --scan');
    // A mistyped --data must not read as "no matching events".
    if (!fs.existsSync(p.auditDir)) throw new NotFoundError(`no audit log in ${p.dataDir}`);
    let records: Iterable<AuditRecord>;
    if (args.values.scan === true) {
      if (text !== undefined) throw new UsageError('--text needs the index: leave out --scan');
      records = (await searchAuditLog(p.auditDir, q)).records;
    } else {
      if (text !== undefined && text.trim() === '') throw new UsageError('--text: empty query');
      try {
        // Streamed: printed as they are read. The first record is fetched here, so that opening the
        // index (and its failures) happens inside this try.
        records = primed(searchIndexedStream(p.auditDir, { ...q, text }, indexOpts));
      } catch (e) {
        if (e instanceof AuditIndexError && e.code === 'VIGIL_AUDIT_SEARCH_TEXT') throw new UsageError(e.message);
        // An index this user cannot write (a read-only copy of the log, another owner): filters still work by scanning.
        const code = String((e as { code?: unknown }).code ?? '');
        if (text !== undefined || !/^(SQLITE_READONLY|SQLITE_CANTOPEN|EACCES|EPERM|EROFS)/.test(code)) throw e;
        args.err.write(`vigil audit search: cannot use the search index (${code}); scanning the log instead\n`);
        records = (await searchAuditLog(p.auditDir, q)).records;
      }
    }
    printRecords(args, records, args.values.json === true);
    return 0;
  },
};

/** `gen` with its first item already fetched (errors of its start are thrown here), as an iterable. */
function primed<T>(gen: Generator<T>): Iterable<T> {
  const first = gen.next();
  return {
    *[Symbol.iterator]() {
      if (first.done) return;
      yield first.value;
      yield* { [Symbol.iterator]: () => gen };
    },
  };
}

/** Search results of every replica: the replica first (table), or as a `replica` member (JSON). */
export function printSharedRecords(args: CommandArgs, records: SharedRecord[], json: boolean): void {
  if (!json) args.out.write('REPLICA'.padEnd(24) + '  ' + EVENT_ROW_HEADER + '\n');
  for (const r of records) args.out.write((json ? JSON.stringify({ ...r.event, replica: r.replica }) : escapeTerminal(r.replica).padEnd(24) + '  ' + formatEventRow(r.event)) + '\n');
}

export const auditReindexCommand: Command = {
  name: 'audit reindex',
  summary: 'Rebuild this replica\'s part of the shared audit index (PostgreSQL store) from its log: its rows are dropped and copied again.',
  usage: '[--data DIR]',
  options: {},
  examples: ['audit reindex'],
  async run(args) {
    const shared = await openSharedAudit(args);
    if (!shared) throw new UsageError('audit reindex rebuilds the shared index of a PostgreSQL store (store: {kind: postgres}); for the local index: vigil audit index rebuild');
    try {
      if (!shared.local) throw new NotFoundError('no audit log (or audit public key) in this data dir');
      const t0 = performance.now();
      const res = await reindexShared(shared.chains, shared.local);
      if (res.diverged) {
        args.err.write(`audit reindex: the log itself does not read as one chain at seq ${res.diverged.seq}: ${res.diverged.problem}\n`);
        return 1;
      }
      const secs = (performance.now() - t0) / 1000;
      const a = res.archived;
      if (a) args.err.write(`audit reindex: the index held ${a.rows} record(s) of this replica, ${a.firstSeq === a.lastSeq ? `seq ${a.firstSeq}` : `seq ${a.firstSeq}..${a.lastSeq} among them`}, that its log no longer has (restored from an older copy, or lost): they are kept as chain ${a.replica}\n`);
      args.out.write(`shared index rebuilt for replica ${shared.local.replica}: ${res.added} signed record(s) in ${secs.toFixed(1)} s\n`);
      return 0;
    } finally {
      await shared.close();
    }
  },
};

export const auditIndexRebuildCommand: Command = {
  name: 'audit index rebuild',
  withoutProxies: true,
  summary: 'Rebuild the search index from the audit log (it is only a copy: the log stays the record).',
  usage: '[--data DIR]',
  options: {},
  examples: ['audit index rebuild', 'audit index rebuild --data /var/lib/vigil'],
  async run(args) {
    const p = await auditPaths(args);
    if (!fs.existsSync(p.auditDir)) throw new NotFoundError(`no audit log in ${p.dataDir}`);
    const t0 = performance.now();
    const index = AuditIndex.open(p.auditDir);
    try {
      const res = index.rebuild();
      const s = index.status();
      const secs = (performance.now() - t0) / 1000;
      args.out.write(`search index rebuilt: ${res.added} records from ${s.segments} segment(s) in ${secs.toFixed(1)} s (${Math.round(res.added / Math.max(secs, 0.001))} records/s), ${(s.bytes / 1048576).toFixed(1)} MiB, up to seq ${s.indexedSeq}\n`);
    } finally {
      index.close();
    }
    return 0;
  },
};

export const auditIndexStatusCommand: Command = {
  name: 'audit index status',
  withoutProxies: true,
  summary: 'Show how far the search index has read the audit log (lag = records not yet indexed).',
  usage: '[--data DIR] [--json]',
  options: { json: { type: 'boolean' } },
  examples: ['audit index status', 'audit index status --json'],
  async run(args) {
    const p = await auditPaths(args);
    if (!fs.existsSync(p.auditDir)) throw new NotFoundError(`no audit log in ${p.dataDir}`);
    const index = AuditIndex.open(p.auditDir);
    try {
      const s = index.status();
      const lag = Math.max(0, s.chainSeq - s.indexedSeq);
      // With a PostgreSQL store: every registered chain in the shared index too.
      const shared = await openSharedAudit(args);
      const chains = shared ? await shared.chains.chains().finally(() => shared.close()) : undefined;
      if (args.values.json === true) args.out.write(JSON.stringify({ ...s, lag, ...(chains ? { shared: chains.map(({ keys: _k, ...c }) => c) } : {}) }) + '\n');
      else {
        args.out.write(`search index: ${s.records} records from ${s.segments} segment(s), indexed up to seq ${s.indexedSeq}, log at seq ${s.chainSeq} (lag ${lag}), ${(s.bytes / 1048576).toFixed(1)} MiB\n`);
        for (const c of chains ?? []) {
          const mine = c.replica === shared?.local?.replica ? ' (this data dir)' : '';
          args.out.write(`shared index: chain ${c.replica}${mine} on ${c.host}: indexed up to seq ${c.indexedSeq}${c.indexedAt ? ` at ${c.indexedAt}` : ''}, its log at seq ${c.chainSeq} then${c.diverged ? `; DIVERGED at seq ${c.diverged.seq}: ${c.diverged.problem}` : ''}\n`);
        }
      }
    } finally {
      index.close();
    }
    return 0;
  },
};

export const auditTailCommand: Command = {
  name: 'audit tail',
  withoutProxies: true,
  summary: 'Show the newest audit events; -f keeps following new ones.',
  usage: '[-f] [-n N] [--json]',
  options: {
    follow: { type: 'boolean', short: 'f', help: 'keep printing new events as they are written (Ctrl-C stops)' },
    lines: { type: 'string', short: 'n', arg: 'N', help: 'how many of the newest events to show first (default 20)' },
    json: { type: 'boolean' },
  },
  examples: ['audit tail -f', 'audit tail -n 100 --json'],
  async run(args) {
    const p = await auditPaths(args);
    if (!fs.existsSync(p.auditDir)) throw new NotFoundError(`no audit log in ${p.dataDir}`);
    const json = args.values.json === true;
    const follow = args.values.follow === true;
    const ac = new AbortController();
    const stop = () => ac.abort();
    if (follow) {
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    }
    try {
      if (!json) args.out.write(EVENT_ROW_HEADER + '\n');
      const it = tailAuditLog(p.auditDir, { lines: positiveInt('lines', stringOpt(args.values, 'lines')) ?? 20, follow, signal: ac.signal });
      for await (const r of it) args.out.write((json ? JSON.stringify(r.event) : formatEventRow(r.event)) + '\n');
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  },
};

export const AUDIT_COMMANDS: Command[] = [auditVerifyCommand, auditHeadCommand, auditSearchCommand, auditTailCommand, auditIndexRebuildCommand, auditIndexStatusCommand, auditReindexCommand];
