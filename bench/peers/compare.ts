import { execFile } from 'node:child_process';
import os from 'node:os';

/**
 * The side-by-side harness shared by the peer scripts (bench/peers/*.ts) and their CI subsets
 * (test/<protocol>/drivers.test.ts): each client runs one workload direct and through vigil, prints its
 * results as name → value, and the two are compared key by key.
 */
export interface PeerRow {
  driver: string;
  check: string;
  direct: string;
  vigil: string;
  same: boolean;
}

/** Results of one run as name → value; a failed run is one `run` entry with the error. */
export type Results = Record<string, string>;

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function exec(cmd: string, args: string[], o: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; input?: string | Buffer } = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { env: o.env ?? process.env, cwd: o.cwd, timeout: o.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number }).code ?? 1) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout: String(stdout), stderr: String(stderr) });
    });
    child.stdin?.on('error', () => {});
    child.stdin?.end(o.input ?? '');
  });
}

/** The last line of a failed command's output, as a result value. */
export const failed = (r: ExecResult, what = 'failed') => `${what}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')}`;

/** `key=value` lines (what the Java and Python workloads print) as results. */
export function keyValueLines(text: string): Results {
  const out: Results = {};
  for (const line of text.trim().split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

export function compare(driver: string, direct: Results, vigil: Results): PeerRow[] {
  const keys = [...new Set([...Object.keys(direct), ...Object.keys(vigil)])].sort();
  return keys.map((check) => {
    const d = direct[check] ?? '(missing)';
    const v = vigil[check] ?? '(missing)';
    return { driver, check, direct: d, vigil: v, same: d === v };
  });
}

/** A fixed-width text table of the rows. */
export function formatTable(rows: PeerRow[]): string {
  const clip = (raw: string) => {
    const s = raw.replace(/\n/g, '\\n');
    return s.length > 48 ? `${s.slice(0, 45)}...` : s;
  };
  const cells = [['driver', 'check', 'direct', 'vigil', 'same'], ...rows.map((r) => [r.driver, r.check, clip(r.direct), clip(r.vigil), r.same ? 'yes' : 'NO'])];
  const widths = cells[0].map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  return cells.map((c) => c.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** The rows as a README table. */
export function markdownTable(rows: PeerRow[]): string {
  const esc = (raw: string) => {
    const s = raw.replace(/\n/g, '\\n');
    return (s.length > 40 ? `${s.slice(0, 37)}...` : s).replace(/\|/g, '\\|');
  };
  return [
    '| driver | check | direct | through vigil | same |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.driver} | ${r.check} | \`${esc(r.direct)}\` | \`${esc(r.vigil)}\` | ${r.same ? 'yes' : '**no**'} |`),
  ].join('\n');
}

/** Print a peer run's heading, table and count; sets the exit status to 1 if any check differs. */
export function report(title: string, rows: PeerRow[], o: { markdown: boolean; started: Date; load: number }): void {
  console.log(`# ${title}, ${o.started.toISOString().slice(0, 10)} (load ${o.load.toFixed(2)} -> ${os.loadavg()[0].toFixed(2)})`);
  console.log(o.markdown ? markdownTable(rows) : formatTable(rows));
  const differ = rows.filter((r) => !r.same);
  console.log(`${rows.length} checks, ${differ.length} differ`);
  if (differ.length) process.exitCode = 1;
}
