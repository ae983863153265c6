/**
 * One report run, shared by `vigil report access` and the gateway's schedule: collect the model, render
 * it, write the file atomically (0600: it quotes statements and commands), then say so in the audit log
 * (`report.generated`, with the file's SHA-256 so the copy handed to an auditor can be matched later).
 */
import crypto from 'node:crypto';
import type { EventInput } from '../../src/events/envelope.ts';
import { AtomicFile } from '../export/index.ts';
import { collectReport, type ReportSources } from './source.ts';
import { renderReport, type ReportFormat } from './index.ts';
import type { ReportModel, ReportPeriod } from './model.ts';

export interface GeneratedReport {
  model: ReportModel;
  text: string;
  bytes: number;
  sha256: string;
}

export async function generateReport(src: ReportSources, period: ReportPeriod, format: ReportFormat, now = new Date()): Promise<GeneratedReport> {
  const model = await collectReport(src, period, now);
  const text = renderReport(model, format);
  return { model, text, bytes: Buffer.byteLength(text), sha256: crypto.createHash('sha256').update(text).digest('hex') };
}

/** Write `text` to `file` so that it appears whole or not at all. */
export async function writeAtomically(file: string, text: string): Promise<void> {
  const f = new AtomicFile(file);
  try {
    f.stream.write(text);
    await f.finish();
    f.commit();
  } catch (e) {
    f.abort();
    throw e;
  }
}

/** What the `report.generated` event says about a run (all a worker thread needs to send back). */
export interface ReportedRun {
  model: Pick<ReportModel, 'summary' | 'period' | 'verification'>;
  bytes: number;
  sha256: string;
}

/** The `report.generated` event of a report run. */
export function reportEvent(
  r: ReportedRun,
  how: { format: ReportFormat; out: string; schedule?: string; name?: string; actor: EventInput['actor']; source: EventInput['source'] },
): EventInput {
  const s = r.model.summary;
  return {
    type: 'report.generated',
    outcome: 'success',
    actor: how.actor,
    source: how.source,
    target: { name: 'report/access', protocol: 'vigil' },
    details: {
      report: 'access',
      format: how.format,
      out: how.out,
      since: r.model.period.since,
      until: r.model.period.until,
      bytes: r.bytes,
      sha256: r.sha256,
      sessions: s.sessions,
      changes: s.changes,
      unclassified: s.unclassified,
      denied_or_failed: s.denied_or_failed,
      chain_status: r.model.verification.status,
      records_left_out: r.model.verification.records_left_out ?? 0,
      ...(r.model.verification.checkpoint ? { chain_checkpoint_seq: r.model.verification.checkpoint.seq } : {}),
      ...(how.schedule ? { schedule: how.schedule, name: how.name } : {}),
    },
  };
}
