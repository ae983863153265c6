import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type http from 'node:http';
import type { GatewayServices } from '../gateway/services.ts';
import { dataPaths } from '../data-dir.ts';
import { ApiError } from '../api/http.ts';
import { REPORT_FORMATS, roleTargetsOf, type ReportFormat } from '../../recorder/reports/index.ts';
import { runReportInWorker } from '../../recorder/reports/worker.ts';
import type { ReportedRun } from '../../recorder/reports/generate.ts';

/**
 * The access-review report (`vigil report access`) for the console: the same worker run the gateway's
 * report schedules use, so verifying a month of audit log never stalls the sessions this process relays.
 * The worker writes a file (beside the scheduled reports, as a dot file); it is read back and removed.
 */

/**
 * The HTML report is framed by the console page. It carries its own CSP (inline script and style by hash);
 * this header adds a sandbox without same-origin, so even a report quoting hostile text could not use
 * the console's cookie, and lets only the console frame it.
 */
export const REPORT_FRAME_CSP = ["sandbox allow-scripts", "default-src 'none'", "script-src 'unsafe-inline'", "style-src 'unsafe-inline'", 'img-src data:', "base-uri 'none'", "form-action 'none'", "frame-ancestors 'self'"].join('; ');

export function reportFormat(text: string | null): ReportFormat {
  const f = text ?? 'html';
  if (!(REPORT_FORMATS as readonly string[]).includes(f)) throw new ApiError(400, 'VIGIL_BAD_REQUEST', `format: expected ${REPORT_FORMATS.join(', ')}`);
  return f as ReportFormat;
}

export const REPORT_TYPES: Record<ReportFormat, string> = { html: 'text/html; charset=utf-8', md: 'text/markdown; charset=utf-8', json: 'application/json; charset=utf-8' };

/** One console report at a time in this process: a reader cannot pile up workers verifying the whole log. */
let running = false;

export async function accessReport(services: GatewayServices, since: Date, until: Date, format: ReportFormat): Promise<{ run: ReportedRun; text: string }> {
  if (until < since) throw new ApiError(400, 'VIGIL_BAD_REQUEST', 'until is before since');
  if (running) throw new ApiError(429, 'VIGIL_BUSY', 'A report is being generated; try again when it is done.');
  running = true;
  const paths = dataPaths(services.dataDir);
  const out = path.join(paths.reports, `.console-${crypto.randomBytes(8).toString('hex')}.${format}`);
  try {
    fs.mkdirSync(paths.reports, { recursive: true, mode: 0o700 });
    const period = { since: since.toISOString(), until: until.toISOString() };
    const run = await runReportInWorker({ auditDir: paths.audit, publicKeyFile: paths.auditPublicKey, dataDir: services.dataDir, roleTargets: roleTargetsOf(services.config), store: services.config.store, period, format, out, now: new Date().toISOString() });
    return { run, text: fs.readFileSync(out, 'utf8') };
  } finally {
    running = false;
    fs.rmSync(out, { force: true });
  }
}

/**
 * A refusal of the framed HTML report as a page the frame can show (a JSON error is served with the
 * console's frame-ancestors 'none', so the frame would stay blank).
 */
export function sendReportError(res: http.ServerResponse, status: number, message: string): void {
  const text = message.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const html = `<!DOCTYPE html><html lang="en"><meta charset="utf-8"><title>Report not available</title><p role="alert">Report not available: ${text}</p></html>\n`;
  res.writeHead(status, { 'content-security-policy': REPORT_FRAME_CSP, 'x-content-type-options': 'nosniff', 'content-type': 'text/html; charset=utf-8', 'content-length': String(Buffer.byteLength(html)), 'cache-control': 'no-store' });
  res.end(html);
}

/** Whether a request is for the HTML report shown in the console's frame (not a download). */
export const isFramedReport = (url: URL) => url.pathname === '/console/api/reports/access' && (url.searchParams.get('format') ?? 'html') === 'html' && !url.searchParams.get('download');
