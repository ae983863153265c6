import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { UsageError, stringOpt, type Command, type CommandArgs } from '../command.ts';
import os from 'node:os';
import { loadFromArgs, localUser } from '../context.ts';
import { auditOptions } from '../../data-dir.ts';
import { EventBus } from '../../events/bus.ts';
import type { EventInput } from '../../events/envelope.ts';
import { silentLogger } from '../../log.ts';
import { openAuditForCli } from '../../../recorder/audit/index.ts';
import { NotFoundError } from '../../errors.ts';
import { dataPaths } from '../../data-dir.ts';
import type { AuditQuery } from '../../../recorder/audit/index.ts';
import { catchUpLocal, openSharedAudit, toSharedQuery } from './audit-shared.ts';
import { streamShared } from '../../../recorder/audit/shared-index.ts';
import { AtomicFile, exportAuditLog, checkFieldName, setProductVersion, type ExportFormat, type StreamProgress } from '../../../recorder/export/index.ts';
import { AUDIT_FILTER_OPTIONS, auditFilterQuery } from './audit.ts';

const FILTER_FLAGS = ['since', 'until', 'user', 'target', 'type', 'session'] as const;

function parseFormat(text: string, args: CommandArgs, templates: Record<string, { fields: Record<string, string>; line: string }>): ExportFormat {
  const columnsText = stringOpt(args.values, 'columns');
  if (columnsText !== undefined && text !== 'csv') throw new UsageError('--columns applies to --format csv only');
  if (text === 'jsonl' || text === 'ocsf') return { kind: text };
  if (text === 'csv') {
    if (columnsText === undefined) return { kind: 'csv' };
    const columns = columnsText.split(',').map((c) => c.trim()).filter(Boolean);
    if (columns.length === 0) throw new UsageError('--columns: name at least one column');
    for (const c of columns) {
      try {
        checkFieldName(c);
      } catch (e) {
        throw new UsageError(`--columns: ${(e as Error).message}`);
      }
    }
    return { kind: 'csv', columns };
  }
  if (text.startsWith('template:')) {
    const name = text.slice('template:'.length);
    const template = templates[name];
    if (!template) {
      const known = Object.keys(templates);
      throw new UsageError(`--format ${text}: no template ${JSON.stringify(name)} in export.templates${known.length ? ` (have: ${known.join(', ')})` : ' (none configured)'}`);
    }
    return { kind: 'template', name, template };
  }
  throw new UsageError(`--format: expected jsonl, csv, ocsf or template:NAME, got ${JSON.stringify(text)}`);
}

/**
 * A one-line bar on a terminal's stderr, redrawn at most every 100 ms and once more at the end (left on
 * screen with the total); nothing when stderr is not a TTY (a pipe or a log file gets no escape codes).
 */
function progressBar(err: NodeJS.WritableStream): { update: (p: StreamProgress) => void; done: () => void } | undefined {
  if (!(err as NodeJS.WriteStream).isTTY) return undefined;
  let last = 0;
  let latest: StreamProgress = { bytesRead: 0, bytesTotal: 0, matched: 0 };
  const started = performance.now();
  const draw = (p: StreamProgress, now: number) => {
    const frac = p.bytesTotal ? Math.min(1, p.bytesRead / p.bytesTotal) : 1;
    const width = 30;
    const filled = Math.round(frac * width);
    const rate = p.matched / Math.max(0.001, (now - started) / 1000);
    err.write(`\r\x1b[2Kexport [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}%  ${p.matched} events  ${Math.round(rate)}/s`);
  };
  return {
    update(p) {
      latest = p;
      const now = performance.now();
      if (now - last < 100) return;
      last = now;
      draw(p, now);
    },
    done() {
      draw({ ...latest, bytesRead: latest.bytesTotal }, performance.now());
      err.write('\n');
    },
  };
}

export const auditExportCommand: Command = {
  name: 'audit export',
  summary: 'Export audit events as evidence: JSONL (as stored), CSV (PCI DSS columns first), OCSF 1.8.0, or a configured template. Streams; the export is itself audited.',
  usage:
    '--format jsonl|csv|ocsf|template:NAME [--since 2h|ISO] [--until 2h|ISO] [--user U] [--target T] [--type PREFIX] [--session ID] [--checkpoints] [--columns a,b,…] [--out FILE|-]',
  options: {
    format: { type: 'string', arg: 'FORMAT', help: 'jsonl (as stored, default), csv, ocsf, or template:NAME from audit.export.templates' },
    ...AUDIT_FILTER_OPTIONS,
    checkpoints: { type: 'boolean', help: 'include the signed checkpoint records (jsonl)' },
    columns: { type: 'string', arg: 'a,b,…', help: 'csv: these columns, in this order' },
    out: { type: 'string', short: 'o', arg: 'FILE|-', help: 'write here (default: standard output)' },
    replica: { type: 'string', arg: 'ID', help: 'with a PostgreSQL store: only this replica\'s chain' },
    local: { type: 'boolean', help: 'with a PostgreSQL store: only this data dir\'s log, not every replica' },
  },
  examples: ['audit export --format csv --since 30d --out q3.csv', 'audit export --format ocsf --user alice --since 2026-01-01T00:00:00Z -o alice.ocsf.jsonl'],
  async run(args) {
    const formatText = stringOpt(args.values, 'format') ?? 'jsonl';
    const outPath = stringOpt(args.values, 'out');
    const query: AuditQuery = {
      ...auditFilterQuery(args.values),
      hideCheckpoints: args.values.checkpoints !== true,
    };
    // The filter as given, for the audit.export event (times resolved, so "2h" says which two hours).
    const filter: Record<string, string | boolean> = {};
    for (const k of FILTER_FLAGS) {
      const v = query[k];
      if (v !== undefined) filter[k] = v instanceof Date ? v.toISOString() : v;
    }
    if (args.values.checkpoints === true) filter.checkpoints = true;
    const replica = stringOpt(args.values, 'replica');
    if (replica !== undefined) filter.replica = replica;
    const filterText = Object.entries(filter).map(([k, v]) => (v === true ? `--${k}` : `--${k} ${v}`)).join(' ');

    const { config, dataDir } = loadFromArgs(args);
    const format = parseFormat(formatText, args, config.export.templates);
    const auditDir = dataPaths(dataDir).audit;
    if (!fs.existsSync(auditDir)) throw new NotFoundError(`no audit log in ${dataDir}`);
    const source = { ip: 'local', via: `cli:${localUser()}@${os.hostname()}` };
    /**
     * The audit.export event is written once the export is known to have succeeded or failed. The log is
     * opened only then (the writer, or the spool of a running gateway; no identity or state store, which an
     * export must not create): a long export holds no writer lock that a starting gateway would need.
     */
    const record = async (event: Omit<EventInput, 'source'>) => {
      const audit = await openAuditForCli(auditDir, auditOptions(dataDir, config, silentLogger()));
      try {
        await new EventBus(audit).emit({ ...event, source });
      } finally {
        await audit.close();
      }
    };
    let file: AtomicFile | undefined;
    try {
      setProductVersion(packageVersion());
      const toFile = outPath !== undefined && outPath !== '-';
      if (toFile) {
        if (fs.statSync(outPath, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--out: ${outPath} is a directory; name the file to write`);
        try {
          file = new AtomicFile(outPath);
        } catch (e) {
          throw new UsageError(`--out: cannot create a file beside ${outPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        }
      }
      const bar = progressBar(args.err);
      const actor = { user: localUser(), roles: [] as string[] };
      const target = { name: 'audit', protocol: 'vigil' };
      const details: Record<string, unknown> = { format: formatText, filter, filter_text: filterText, out: toFile ? outPath : '-' };
      let result: { count: number; bytes: number };
      // With a PostgreSQL store: every replica's events from the shared index (this replica's caught up first).
      const shared = args.values.local === true ? undefined : await openSharedAudit(args);
      if (!shared && replica !== undefined) throw new UsageError('--replica needs the shared index (store: postgres), without --local');
      if (shared) details.source = replica ? `shared index, replica ${replica}` : 'shared index, every replica';
      try {
        // Evidence: this replica's every signed record, however far behind the follower is.
        if (shared) await catchUpLocal(shared, args.err, Infinity);
        let leftOut = 0;
        const records = shared && streamShared(shared.chains, toSharedQuery(query, { replica }), undefined, () => leftOut++);
        // The local log is checked as the shared index is: a damaged or altered record is never exported as the log's.
        result = await exportAuditLog(auditDir, file ? file.stream : (args.out as Writable), { format, query, onProgress: bar?.update, records, onLeftOut: () => leftOut++ });
        bar?.done();
        if (leftOut) {
          details.left_out = leftOut;
          args.err.write(`vigil audit export: ${leftOut} ${shared ? 'indexed record(s) left out:' : 'record(s) left out: damaged, or'} their bytes do not match their hash (run \`vigil audit verify\`)\n`);
        }
        if (file) await file.finish();
      } catch (e) {
        bar?.done();
        file?.abort();
        file = undefined;
        await record({ type: 'audit.export', outcome: 'failure', actor, target, details: { ...details, error: (e as Error).message } });
        throw e;
      } finally {
        await shared?.close();
      }
      // The file appears only once its export is on the record.
      await record({ type: 'audit.export', outcome: 'success', actor, target, details: { ...details, count: result.count, bytes: result.bytes } });
      if (file) {
        file.commit();
        file = undefined;
        args.err.write(`exported ${result.count} event(s) to ${outPath} (${formatText}, ${result.bytes} bytes)\n`);
      }
      return 0;
    } finally {
      file?.abort();
    }
  },
};

function packageVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

export const AUDIT_EXPORT_COMMANDS: Command[] = [auditExportCommand];
