import fs from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import type { AuditQuery } from '../audit/read.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { streamAuditRecords, type StreamProgress } from './stream.ts';
import { CsvWriter, DEFAULT_CSV_COLUMNS } from './csv.ts';
import { toOcsf } from './ocsf/mapping.ts';
import { compileTemplate, type TemplateConfig } from './template.ts';

export { streamAuditRecords, type StreamedRecord, type StreamProgress } from './stream.ts';
export { CsvWriter, csvCell, DEFAULT_CSV_COLUMNS, PCI_COLUMNS } from './csv.ts';
export { compileTemplate, TemplateError, type TemplateConfig } from './template.ts';
export { toOcsf, OCSF_VERSION, setProductVersion } from './ocsf/mapping.ts';
export { checkFieldName, FIELD_ALIASES } from './fields.ts';

/**
 * Evidence exports of the audit log: streamed (segment by segment, in chunks) so memory stays flat for any
 * log size, each event written as soon as it is read.
 *   jsonl         the event's canonical JSON exactly as stored (its bytes hash into the chain)
 *   csv           RFC 4180, PCI DSS 10.2.2 columns first, formula-injection safe
 *   ocsf          OCSF 1.8.0, one JSON event per line (mapping.ts)
 *   template:NAME a line format from config `export.templates`
 */
export type ExportFormat = { kind: 'jsonl' } | { kind: 'csv'; columns?: string[] } | { kind: 'ocsf' } | { kind: 'template'; name: string; template: TemplateConfig };

export interface ExportOptions {
  format: ExportFormat;
  query: AuditQuery;
  onProgress?: (p: StreamProgress) => void;
  /** Read the records from here instead of the log in `auditDir` (the shared index of every replica). */
  records?: AsyncIterable<{ eventJson: string; event: AuditEvent }>;
  /** Records of the log left out as damaged or altered (their bytes do not match their hash). */
  onLeftOut?: (seq: number | undefined, why: string) => void;
}

export interface ExportResult {
  count: number;
  bytes: number;
}

type Encoder = { header?: string; line: (eventJson: string, event: AuditEvent) => string };

function encoderFor(format: ExportFormat): Encoder {
  switch (format.kind) {
    case 'jsonl':
      return { line: (json) => json + '\n' };
    case 'csv': {
      const csv = new CsvWriter(format.columns ?? DEFAULT_CSV_COLUMNS);
      return { header: csv.header(), line: (_json, e) => csv.row(e) };
    }
    case 'ocsf':
      return { line: (_json, e) => JSON.stringify(toOcsf(e)) + '\n' };
    case 'template': {
      const render = compileTemplate(format.template);
      return { line: (_json, e) => render(e) };
    }
  }
}

/** Lines are gathered up to this many bytes per write, and the writer's backpressure is honoured. */
const WRITE_BATCH = 256 * 1024;

/**
 * Streams the matching events to `out`. Rejects if `out` fails (EPIPE, ENOSPC, …) at any point, including
 * on the last write: the promise resolves only after `out` accepted the final chunk (its write callback),
 * so a caller never records a successful export whose bytes did not get out.
 */
export async function exportAuditLog(auditDir: string, out: Writable, opts: ExportOptions): Promise<ExportResult> {
  const enc = encoderFor(opts.format);
  let failure: Error | undefined;
  // Stays attached: an error emitted after we are done must not become an unhandled 'error' event.
  out.on('error', (e: Error) => (failure ??= e));
  const waitWritable = () =>
    new Promise<void>((resolve) => {
      const done = () => {
        out.off('drain', done);
        out.off('error', done);
        out.off('close', done);
        resolve();
      };
      out.on('drain', done);
      out.on('error', done);
      out.on('close', done);
    });
  let pending = enc.header ?? '';
  let bytes = 0;
  let count = 0;
  for await (const r of opts.records ?? streamAuditRecords(auditDir, opts.query, { onProgress: opts.onProgress, onLeftOut: opts.onLeftOut })) {
    pending += enc.line(r.eventJson, r.event);
    count++;
    if (pending.length >= WRITE_BATCH) {
      if (failure) throw failure;
      bytes += Buffer.byteLength(pending);
      const ok = out.write(pending);
      pending = '';
      if (!ok) await waitWritable();
    }
  }
  if (failure) throw failure;
  bytes += Buffer.byteLength(pending);
  await new Promise<void>((resolve) => {
    out.write(pending, (err) => {
      if (err) failure ??= err;
      resolve();
    });
  });
  if (failure) throw failure;
  return { count, bytes };
}

/**
 * A file written as a whole or not at all, readable only by its owner: the export goes to a temporary file
 * (0600, created exclusively) beside the destination, which `commit` fsyncs and renames over it; `abort`
 * removes it. The caller commits only once the export is on the audit record.
 */
export class AtomicFile {
  readonly tempPath: string;
  readonly stream: fs.WriteStream;
  private readonly fd: number;

  constructor(readonly finalPath: string) {
    const dir = path.dirname(path.resolve(finalPath));
    this.tempPath = path.join(dir, `.${path.basename(finalPath)}.${process.pid}.${Date.now()}.tmp`);
    this.fd = fs.openSync(this.tempPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
    // An existing umask cannot widen 0600; fchmod makes it exact whatever the umask.
    fs.fchmodSync(this.fd, 0o600);
    this.stream = fs.createWriteStream('', { fd: this.fd, autoClose: false });
  }

  /** Everything written so far is on disk (the stream is ended). */
  async finish(): Promise<void> {
    if (this.stream.errored) throw this.stream.errored;
    await new Promise<void>((resolve, reject) => {
      this.stream.once('error', reject);
      this.stream.end(() => resolve());
    });
    fs.fsyncSync(this.fd);
  }

  commit(): void {
    fs.closeSync(this.fd);
    fs.renameSync(this.tempPath, this.finalPath);
    try {
      const dirFd = fs.openSync(path.dirname(path.resolve(this.finalPath)), 'r');
      try {
        fs.fsyncSync(dirFd);
      } finally {
        fs.closeSync(dirFd);
      }
    } catch {
      // Directory fsync is best effort (not supported everywhere); the file itself is synced.
    }
  }

  abort(): void {
    // destroy() closes the fd itself (asynchronously, whatever autoClose says): closing it here as well
    // made that later close fail with EBADF (an unhandled 'error'), or hit another file that reused the number.
    this.stream.on('error', () => {});
    this.stream.destroy();
    fs.rmSync(this.tempPath, { force: true });
  }
}
