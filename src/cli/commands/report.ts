import fs from 'node:fs';
import os from 'node:os';
import { UsageError, stringOpt, type Command } from '../command.ts';
import { loadFromArgs, localUser } from '../context.ts';
import { timeBoundArg } from './audit-bundle.ts';
import { iso } from '../../../recorder/audit/read.ts';
import { auditOptions, dataPaths } from '../../data-dir.ts';
import { EventBus } from '../../events/bus.ts';
import { silentLogger } from '../../log.ts';
import { NotFoundError } from '../../errors.ts';
import { openStateStore } from '../../store/index.ts';
import { replicaIdOf } from '../../../recorder/audit/shared-index.ts';
import { catchUpLocal } from './audit-shared.ts';
import { openAuditForCli } from '../../../recorder/audit/index.ts';
import type { ReportFormat } from '../../../recorder/reports/index.ts';

export const reportAccessCommand: Command = {
  name: 'report access',
  summary: 'Access-review report: who had access to what, when and why, sessions, changes, denied attempts, unused grants, certificates, and the audit chain verification.',
  usage: '[--since 30d|ISO] [--until DURATION|ISO] [--format html|md|json] [--out FILE|-]',
  options: {
    since: { type: 'string', arg: '30d|ISO', help: 'start of the period (default 30d ago)' },
    until: { type: 'string', arg: 'DURATION|ISO', help: 'end of the period, inclusive (default now); an ISO time reaches the end of its last second, minute or day' },
    format: { type: 'string', arg: 'html|md|json', help: 'report format (default html)' },
    out: { type: 'string', short: 'o', arg: 'FILE|-', help: 'write here (default: standard output)' },
  },
  examples: ['report access --since 90d --format html --out q3-access-review.html'],
  async run(args) {
    const now = new Date();
    // Inclusive bounds at microseconds, as event times: an --until of 23:59:59Z reaches 23:59:59.999999.
    const since = timeBoundArg('since', stringOpt(args.values, 'since') ?? '30d', now.getTime())!;
    const until = timeBoundArg('until', stringOpt(args.values, 'until'), now.getTime()) ?? { time: iso(now)!, date: now };
    if (until.time < since.time) throw new UsageError('--until is before --since');
    const formatText = stringOpt(args.values, 'format') ?? 'html';
    // Loaded here: the reports pull in both SQL parsers (megabytes), which no other command needs at start.
    const { REPORT_FORMATS, roleTargetsOf } = await import('../../../recorder/reports/index.ts');
    const { generateReport, reportEvent, writeAtomically } = await import('../../../recorder/reports/generate.ts');
    if (!(REPORT_FORMATS as readonly string[]).includes(formatText)) throw new UsageError(`--format: expected ${REPORT_FORMATS.join(', ')}, got ${JSON.stringify(formatText)}`);
    const format = formatText as ReportFormat;
    const outPath = stringOpt(args.values, 'out');
    const toFile = outPath !== undefined && outPath !== '-';
    if (toFile && fs.statSync(outPath, { throwIfNoEntry: false })?.isDirectory()) throw new UsageError(`--out: ${outPath} is a directory; name the file to write`);

    const { config, dataDir } = loadFromArgs(args);
    const paths = dataPaths(dataDir);
    if (!fs.existsSync(paths.audit)) throw new NotFoundError(`no audit log in ${dataDir}`);
    const store = await openStateStore(dataDir, config.store);
    let report;
    try {
      // Replicas on a PostgreSQL store: the report covers every replica's events (this one's caught up first).
      let shared: { chains: NonNullable<typeof store.auditChains>; local?: { replica: string; auditDir: string } } | undefined;
      if (store.auditChains) {
        const local = fs.existsSync(paths.auditPublicKey) ? { replica: replicaIdOf(dataDir), auditDir: paths.audit, publicKeyPem: fs.readFileSync(paths.auditPublicKey, 'utf8') } : undefined;
        if (local) await catchUpLocal({ store, chains: store.auditChains, local, close: async () => {} }, args.err, Infinity);
        shared = { chains: store.auditChains, local };
      }
      report = await generateReport({ auditDir: paths.audit, publicKeyFile: paths.auditPublicKey, store, roleTargets: roleTargetsOf(config), shared }, { since: since.time, until: until.time }, format, now);
    } finally {
      await store.close();
    }
    if (toFile) await writeAtomically(outPath, report.text);
    else args.out.write(report.text);
    // The report is on the record once written (the writer, or the spool of a running gateway).
    const audit = await openAuditForCli(paths.audit, auditOptions(dataDir, config, silentLogger()));
    try {
      const source = { ip: 'local', via: `cli:${localUser()}@${os.hostname()}` };
      await new EventBus(audit).emit(reportEvent(report, { format, out: toFile ? outPath : '-', actor: { user: localUser(), roles: [] }, source }));
    } finally {
      await audit.close();
    }
    if (toFile) args.err.write(`access report ${report.model.period.since} .. ${report.model.period.until} written to ${outPath} (${format}, ${report.bytes} bytes)\n`);
    return 0;
  },
};

export const REPORT_COMMANDS: Command[] = [reportAccessCommand];
