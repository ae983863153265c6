import fs from 'node:fs';
import path from 'node:path';
import { exec } from './compare.ts';
import type { MariadbHandle } from '../../test/support/mariadb.ts';
import { MTR_DIR } from '../../test/support/mariadb-mtr.ts';

export { MTR_DIR };

/**
 * MariaDB's own test suite against a running server (`mariadb-test-run --extern`), direct and through vigil,
 * compared test by test: a test's outcome (pass/fail/skip) and its output (the `<vardir>/log/<test>.log`
 * mysqltest writes, which is the result file a passing test matches) must be the same on both routes.
 * The server is set up as mtr sets up its own (test/support/mariadb-mtr.ts), so the selected tests pass
 * direct; only differences between the routes count.
 */

/** Main-suite tests that run in seconds each against an extern server (no restarts, no debug build). */
export const DEFAULT_MTR_TESTS = [
  'alias', 'bool', 'case', 'cast', 'comments', 'compare', 'count_distinct', 'count_distinct2', 'default', 'delete', 'distinct',
  'func_concat', 'func_equal', 'func_group', 'func_if', 'func_in', 'func_isnull', 'func_like', 'func_math', 'func_op', 'func_str',
  'func_time', 'func_json', 'having', 'insert', 'insert_select', 'join', 'key', 'limit', 'null', 'order_by', 'union', 'update',
  'varbinary', 'view', 'trigger', 'sp', 'type_date', 'type_datetime', 'type_decimal', 'type_enum', 'type_float', 'type_blob',
  'ctype_utf8mb4', 'ctype_latin1', 'user_var', 'variables', 'warnings', 'errors', 'create', 'temp_table', 'truncate', 'xa',
];
export const MTR_MODES = { normal: [], ps: ['--ps-protocol'], cursor: ['--cursor-protocol'] } as const;
export type MtrMode = keyof typeof MTR_MODES;

export interface MtrRoute {
  port: number;
  user: string;
  /** Client TLS files (through vigil: the vigil certificate). */
  tls?: { ca: string; cert: string; key: string };
}

export interface MtrOutcome {
  status: string;
  /** What mtr printed after the status: the time in ms, or why it skipped. */
  note: string;
  /** The test's output lines (empty if mysqltest wrote none). */
  output: string[];
  /** mysqltest's own message when it stopped the test (`mysqltest: At line N: query '...' failed: ...`). */
  stopped?: string;
}

/**
 * mtr restarts its own server after a failed test (and checks after each one that the test left nothing
 * behind); an extern server keeps whatever a test that stopped midway created, and every later test that
 * creates `t1` would fail too. So mysqltest (mtr takes its path from MYSQL_TEST) runs with a prologue that
 * empties the databases the tests use before each test, silently: a test's output is what it was.
 */
function mysqltestWithPrologue(dir: string): string {
  const prologue = path.join(dir, 'mtr-prologue.inc');
  const wrapper = path.join(dir, 'mariadb-test-with-prologue');
  fs.writeFileSync(prologue, [
    '--disable_query_log', '--disable_result_log', '--disable_warnings',
    ...['test', 'mysqltest', 'mysqltest1', 'mysqltest2'].flatMap((d) => [
      // Files a test wrote into the database directory (SELECT ... INTO OUTFILE) keep the directory.
      '--error 0,ER_DB_DROP_RMDIR', `DROP DATABASE IF EXISTS ${d};`,
    ]),
    'CREATE DATABASE IF NOT EXISTS test CHARACTER SET latin1 COLLATE latin1_swedish_ci;', 'USE test;',
    '--enable_warnings', '--enable_result_log', '--enable_query_log', '',
  ].join('\n'));
  // mtr puts --defaults-file first, where it must stay.
  fs.writeFileSync(wrapper, [
    '#!/bin/sh',
    'case "$1" in --defaults-file=*|--defaults-extra-file=*|--no-defaults) first="$1"; shift;; *) first=;; esac',
    `exec /usr/bin/mariadb-test $first --prologue=${prologue} "$@"`, '',
  ].join('\n'), { mode: 0o755 });
  return wrapper;
}

/** One mtr run of `tests` on one route in one mode; results by test name. */
export async function runMtr(route: MtrRoute, tests: string[], mode: MtrMode, vardir: string): Promise<Map<string, MtrOutcome>> {
  fs.rmSync(vardir, { recursive: true, force: true });
  fs.mkdirSync(path.join(vardir, 'log'), { recursive: true });
  const ext = (k: string, v: string | number) => ['--extern', `${k}=${v}`];
  const args = [
    path.join(MTR_DIR, 'mariadb-test-run.pl'), `--vardir=${vardir}`, `--user=${route.user}`,
    ...ext('host', '127.0.0.1'), ...ext('port', route.port), ...ext('protocol', 'tcp'),
    ...(route.tls ? [...ext('ssl-ca', route.tls.ca), ...ext('ssl-cert', route.tls.cert), ...ext('ssl-key', route.tls.key)] : []),
    '--force', '--max-test-fail=0', '--retry=0', '--testcase-timeout=3', '--noreorder', ...MTR_MODES[mode],
    ...tests.map((t) => `main.${t}`),
  ];
  // One test at a time, below other work on the machine.
  const env = { ...process.env, MYSQL_TEST: mysqltestWithPrologue(path.dirname(vardir)) };
  const r = await exec('nice', ['-n', '5', 'perl', ...args, '--parallel=1'], { cwd: MTR_DIR, env, timeoutMs: 40 * 60_000 });
  const out = new Map<string, MtrOutcome>();
  let last: MtrOutcome | undefined;
  for (const line of r.stdout.split('\n')) {
    const m = /^main\.([\w-]+)\s.*\[ (\w+) \]\s*(.*)$/.exec(line);
    // What mysqltest said when it stopped (a failed query, a lost connection) follows the test's line.
    if (!m) {
      if (last && !last.stopped && /^mysqltest: /.test(line)) last.stopped = line.slice(0, 300);
      continue;
    }
    const logFile = path.join(vardir, 'log', `${m[1]}.log`);
    last = { status: m[2], note: m[3].trim(), output: fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n') : [] };
    out.set(m[1], last);
    // mtr writes a failing test's output next to its result file; the copy in vardir is what we read.
    fs.rmSync(path.join(MTR_DIR, 'main', `${m[1]}.reject`), { force: true });
  }
  if (out.size === 0) throw new Error(`mariadb-test-run found no tests: ${(r.stderr || r.stdout).slice(-1500)}`);
  return out;
}

export interface MtrRow {
  test: string;
  /** Status per mode: [direct, vigil]. */
  status: Record<MtrMode, [string, string]>;
  /** Per mode where they differ: the first differing output line (direct vs vigil). */
  differs: Partial<Record<MtrMode, string>>;
}

function firstDifference(a: string[], b: string[]): string | undefined {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) return `line ${i + 1}: direct ${JSON.stringify(a[i] ?? '(end)')} / vigil ${JSON.stringify(b[i] ?? '(end)')}`;
  }
  return undefined;
}

/**
 * Puts the server back into the state it had when this was called, before each run: its globals (a test
 * that fails midway leaves the ones it set, such as max_allowed_packet=1024), its databases (a clean latin1
 * `test`) and its accounts (a test that stops before its DROP USER would fail its CREATE USER next time).
 */
export async function mtrReset(db: MariadbHandle): Promise<() => Promise<void>> {
  const globals = async () => new Map((await db.query('SHOW GLOBAL VARIABLES')).map((r) => [r[0], r[1] ?? '']));
  const users = async () => (await db.query("SELECT CONCAT(QUOTE(user), '@', QUOTE(host)) FROM mysql.global_priv")).map((r) => r[0]);
  const initial = await globals();
  const initialUsers = new Set(await users());
  const kept = "'mysql', 'information_schema', 'performance_schema', 'sys', 'mtr'";
  return async () => {
    for (const [name, value] of await globals()) {
      const was = initial.get(name);
      if (was === undefined || was === value) continue;
      const literal = /^-?\d+(\.\d+)?$/.test(was) ? was : `'${was.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
      await db.query(`SET GLOBAL ${name} = ${literal}`).catch(() => {});
    }
    for (const u of await users()) if (!initialUsers.has(u)) await db.query(`DROP USER ${u}`).catch(() => {});
    for (const [d] of await db.query(`SELECT schema_name FROM information_schema.schemata WHERE schema_name NOT IN (${kept})`)) {
      // A test may leave files (SELECT ... INTO OUTFILE) the server will not remove: after the tables went, those.
      await db.query(`DROP DATABASE \`${d}\``).catch(async () => {
        fs.rmSync(path.join(db.datadir, d), { recursive: true, force: true });
        await db.query(`DROP DATABASE IF EXISTS \`${d}\``);
      });
    }
    await db.query('CREATE DATABASE test CHARACTER SET latin1 COLLATE latin1_swedish_ci; DELETE FROM mtr.test_suppressions');
  };
}

/** Every test in every mode on both routes, one run at a time. */
export async function compareMtr(direct: MtrRoute, vigil: MtrRoute, tests: string[], work: string, reset: () => Promise<void>, modes: MtrMode[] = ['normal', 'ps', 'cursor']): Promise<MtrRow[]> {
  const rows = new Map<string, MtrRow>(tests.map((t) => [t, { test: t, status: {} as MtrRow['status'], differs: {} }]));
  for (const mode of modes) {
    // A failing test leaves its tables behind: each run starts from the same server state.
    await reset();
    const d = await runMtr(direct, tests, mode, path.join(work, `mtr-direct-${mode}`));
    await reset();
    const v = await runMtr(vigil, tests, mode, path.join(work, `mtr-vigil-${mode}`));
    for (const row of rows.values()) {
      const a = d.get(row.test) ?? { status: 'missing', note: '', output: [] };
      const b = v.get(row.test) ?? { status: 'missing', note: '', output: [] };
      row.status[mode] = [a.status, b.status];
      const first = firstDifference(a.output, b.output);
      const diff = a.status !== b.status ? `status ${a.status} / ${b.status}; ${first ?? 'same output'}` : first;
      const why = a.stopped !== b.stopped ? `; mysqltest stopped: direct ${JSON.stringify(a.stopped ?? '-')} / vigil ${JSON.stringify(b.stopped ?? '-')}` : '';
      if (diff) row.differs[mode] = diff + why;
    }
  }
  return [...rows.values()];
}

/** The mtr comparison as a table (one line per test, pass/fail per mode per route) and the differences. */
export function formatMtr(rows: MtrRow[], markdown: boolean): string {
  const modes = Object.keys(rows[0]?.status ?? {}) as MtrMode[];
  const cell = (r: MtrRow, m: MtrMode) => `${r.status[m][0]} / ${r.status[m][1]}`;
  const lines: string[] = [];
  if (markdown) {
    lines.push(`| test | ${modes.map((m) => `${m} (direct / vigil)`).join(' | ')} | same |`, `|---|${modes.map(() => '---|').join('')}---|`);
    for (const r of rows) lines.push(`| ${r.test} | ${modes.map((m) => cell(r, m)).join(' | ')} | ${Object.keys(r.differs).length ? '**no**' : 'yes'} |`);
  } else {
    const cells = [['test', ...modes.map((m) => `${m} (direct / vigil)`), 'same'], ...rows.map((r) => [r.test, ...modes.map((m) => cell(r, m)), Object.keys(r.differs).length ? 'NO' : 'yes'])];
    const widths = cells[0].map((_, i) => Math.max(...cells.map((c) => c[i].length)));
    lines.push(...cells.map((c) => c.map((x, i) => x.padEnd(widths[i])).join('  ').trimEnd()));
  }
  const differ = rows.filter((r) => Object.keys(r.differs).length);
  lines.push('', `${rows.length} tests x ${modes.length} modes, ${differ.length} tests differ${differ.length ? ':' : ''}`);
  for (const r of differ) for (const [m, d] of Object.entries(r.differs)) lines.push(`- ${r.test} (${m}): ${d}`);
  return lines.join('\n');
}
