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

/**
 * Main-suite tests that pass direct against the extern server in seconds (chosen by running every test
 * without its own server options, restarts or debug build first: `bench/peers/mysql.ts --mtr-direct-only`),
 * in the order they ran. Why the others are left out: MTR_LEFT_OUT.
 */
export const DEFAULT_MTR_TESTS = [
  'contributors', 'partition_mrr_aria', 'ctype_utf8mb4_myisam', 'partition_mrr_innodb', 'loaddata_autocom_innodb', '1st', 'ctype_utf8mb4_heap', 'strict_autoinc_1myisam',
  'strict_autoinc_3heap', 'create_replace_tmp', 'alter_table_mdev539_maria', 'alter_table_mdev539_myisam', 'strict_autoinc_2innodb', 'sp-no-code', 'long_tmpdir', 'progress_976225',
  'select_pkeycache', 'sp_missing_4665', 'adddate_454', 'ctype_cp866', 'in_datetime_241', 'log_slow_filter', 'ssl_and_innodb', 'information_schema_prepare',
  'ctype_dec8', 'mysqltest_256', 'datetime_456', 'fulltext_derived_4257', 'range_mrr_icp', 'ctype_ucs2_general_ci_ws', 'kill_query-6728', 'ctype_utf8mb3_general_ci_ws',
  'ctype_ucs2_general_ci_casefold', 'ctype_ucs2_turkish_ci_casefold', 'connect-no-db', 'ctype_utf8mb3_general_ci_casefold', 'ctype_utf8mb3_turkish_ci_casefold', 'group_by_null', 'ctype_ucs2_general_mysql500_ci_ws', 'ctype_ucs2_unicode_520_ci_casefold',
  'ctype_utf8mb3_general_mysql500_ci_ws', 'ctype_utf8mb3_unicode_520_ci_casefold', 'ctype_ucs2_general_mysql500_ci_casefold', 'ctype_utf8mb3_general_mysql500_ci_casefold', 'fulltext_derived_4316', 'bool_innodb', 'ctype_utf32_def', 'mdev-37000',
  'mdev19198', 'type_bool', 'bulk_replace', 'locked_temporary-5955', 'ctype_utf8mb4_general_ci_ws', 'ctype_utf8mb4_general_ci_casefold', 'ctype_utf8mb4_turkish_ci_casefold', 'ctype_utf8mb4_uca1400_ai_ci_casefold',
  'ctype_utf8mb4_unicode_ci_casefold', 'ctype_utf8mb4_unicode_520_ci_casefold', 'statistics_close', 'insert_update_autoinc-7150', 'column_compression_utf16', 'temporal_scale_4283', 'alter_table_autoinc-5574', 'ignored_index_innodb',
  'update_ignore_216', 'stat_tables_missing', 'ctype_hebrew', 'create_drop_index', 'check_constraint_show', 'opt_trace_default', 'sql_mode_pad_char_to_full_length', 'type_varbinary',
  'partition_ucs2', 'ps_max_subselect-5113', 'bench_count_distinct', 'second_frac-9175', 'filesort_bad_i_s-7585', 'fulltext_charsets', 'system_mysql_db', 'subselect_gis',
  'key_primary', 'type_geometry_mix_int', 'default_innodb', 'rollback', 'check_constraint_innodb', 'ctype_filename_innodb', 'ctype_uca_innodb', 'innodb_utf8',
  'assign_key_cache', 'delayed_blob', 'gcc296', 'type_char', 'non_blocking_api', 'mdev-35765', 'partition_sp', 'rowid_order_innodb',
  'key_diff', 'win_i_s', 'leaks', 'create_drop_db', 'log_state_bug33693', 'func_encrypt_ucs2', 'win_percent_cume', 'index_intersect_innodb',
  'memory_used', 'explain_innodb', 'ext_key_noPK_6794', 'order_fill_sortbuf', 'explain_json_format_partitions', 'unique', 'deprecated_features', 'skip_log_bin',
  'type_nchar', 'create-uca', 'func_timestamp', 'innodb_group', 'fulltext_multi', 'mdev316', 'gis-loaddata', 'long_unique_using_hash',
  'ctype_mb', 'select_jcl6', 'mrr_derived_crash_4610', 'table_keyinfo-6838', 'ps_3innodb', 'subselect_nulls_innodb', 'show_function_with_pad_char_to_full_length', 'myisam_explain_non_select_all',
  'ctype_utf32_innodb', 'single_delete_update_innodb', 'huge_frm-6224', 'handler_read_last', 'partition_truncate', 'derived_cond_pushdown_innodb', 'keyread', 'explain_json_innodb',
  'large_pages', 'mix2_myisam_ucs2', 'almost_full', 'ctype_ucs2_uca', 'fulltext_update', 'subselect_union_rand', 'win_avg', 'sp-memory-leak',
  'order_by_zerolength-4285', 'mix2_myisam', 'bug46760', 'create_drop_view', 'type_interval', 'blackhole_plugin', 'ctype_cp850', 'ctype_ascii',
  'name_const_replacement', 'ctype_utf8mb3_innodb', 'trigger_no_defaults-11698', 'empty_string_literal', 'sp-i_s_columns', 'mdev-35721-ubsan', 'truncate-stale-6500', 'odbc',
  'func_op', 'mdev_14586', 'order_by_optimizer', 'fulltext_var', 'range_aria_dbt3', 'alter_table_trans', 'information_schema_columns', 'ctype_partitions',
  'filesort_pack', 'ps_2myisam', 'stat_tables_partition', 'subselect_extra_no_semijoin', 'fulltext_distinct', 'union_innodb', 'str_to_datetime_457', 'create_drop_trigger',
  'replace', 'renamedb', 'create_drop_procedure', 'fulltext3', 'last_value', 'sp-fib', 'stack', 'sp-no-valgrind',
  'func_equal', 'ctype_collate_table', 'win_rank', 'win_sum', 'fulltext_cache', 'ctype_swe7', 'information_schema2', 'statistics_index_crash-7362',
  'lock_kill', 'delete_innodb', 'join_cache_notasan', 'ps_4heap', 'win_empty_over', 'sp-condition-handler', 'partition_charset', 'replace_returning_datatypes',
  'ctype_errors', 'multi_update_tiny_hash', 'item_types', 'subselect-crash_15755', 'precedence_bugs', 'alter_table_errors', 'type_num_innodb', 'ansi',
  'timeout', 'check', 'insert_returning_datatypes', 'long_unique_bugs_no_sp_protocol', 'explain_slowquerylog', 'win_big-mdev-11697', 'signal_sqlmode', 'win_insert_select',
  'create_drop_server', 'gis-alter_table_online', 'merge_innodb', 'ctype_uca_partitions', 'empty_table', 'count_distinct2', 'type_uint', 'func_system',
  'partition_mrr_myisam', 'custom_aggregates_i_s', 'innodb_bug878769', 'ctype_cp932', 'join_optimizer', 'statement-expr', 'gis-rt-precise', 'comments',
  'insert_innodb', 'partition_utf8', 'sp_gis', 'order_by_sortkey', 'partition_column_prune', 'ps_innodb', 'func_des_encrypt', 'func_replace',
  'order_by-mdev-10122', 'win_bit', 'win_nth_value', 'innodb_icp', 'type_hex_hybrid', 'analyze_engine_stats', 'subquery_merge', 'ctype_utf8mb4_uca_allkeys520',
  'partition_mgm', 'sp-expr', 'partition_csv', 'bool', 'preload', 'type_row', 'select_safe', 'information_schema_tables',
  'compare', 'subselect_exists2in_costmat', 'order_by_optimizer_innodb', 'trigger-33083', 'subselect_sj_aria', 'signal_demo3', 'prepare', 'ps_5merge',
  'ps_10nestset', 'ctype_utf8_uca', 'json_equals', 'alias', 'case', 'cast', 'count_distinct', 'default',
  'delete', 'func_concat', 'func_group', 'func_if', 'func_in', 'func_isnull', 'func_like', 'func_math',
  'func_str', 'func_time', 'func_json', 'having', 'key', 'limit', 'null', 'sp',
  'type_date', 'type_datetime', 'type_enum', 'type_float', 'type_blob', 'ctype_utf8mb4', 'ctype_latin1', 'user_var',
  'xa', 'auto_increment_ranges_myisam', 'subselect3', 'subselect_no_exists_to_in', 'alter_table_upgrade_myisam', 'subselect3_jcl6', 'alter_table_upgrade_aria', 'frm_bad_row_type-7333',
  'partition_not_blackhole', 'mysql57_virtual', 'create_not_windows', 'type_temporal_mysql56', 'type_temporal_mariadb53', 'stat_tables_flush', 'function_defaults', 'distinct',
  'insert', 'update', 'view', 'type_decimal', 'type_temporal_innodb', 'ctype_collate_database', 'foreign_key', 'merge_mmap',
  'view_alias', 'update_innodb', 'sp-group', 'join_crash', 'func_int', 'myisam_enable_keys-10506', 'mysql5613mysql', 'ctype_nopad_8bit',
  'show_row_order-9226', 'help', 'func_group_innodb', 'innodb_mrr_cpk', 'fast_prefix_index_fetch_innodb', 'warnings', 'errors', 'create',
  'temp_table', 'truncate',
];
/**
 * Main-suite tests that do not pass direct against an extern server, and why (a few of each kind; the
 * selection ran 519 of the suite's 1 295 tests direct, the smallest ones first). They are left out of the comparison: only
 * tests that pass direct say something about vigil.
 */
export const MTR_LEFT_OUT: Record<string, string> = {
  // mtr starts a server with the test's own options (<test>-master.opt, <test>.opt); an extern server has mtr's defaults.
  variables: '--max-user-connections=1, --myisam-recover-options (variables-master.opt)',
  union: '--slow-query-log --log-queries-not-using-indexes (union-master.opt: Slow_queries counts)',
  lowercase_utf8: '--lower-case-table-names=1', 'row-checksum-old': '--old', sysdate_is_now: '--sysdate-is-now', timezone4: '--timezone=GMT+10',
  ctype_utf16_def: '--character-set-server=utf16', ctype_ucs2_def: '--character-set-server=ucs2', 'no-threads': '--thread-handling=no-threads',
  multi_statement: 'the slow log in a file of its own', analyze_stmt_slow_query_log: 'the slow log with long_query_time',
  // mtr loads InnoDB only for tests that include have_innodb.inc; an extern server has it for all.
  insert_select: 'expects no InnoDB (warnings "Unknown storage engine InnoDB")', join: 'expects no InnoDB (SHOW VARIABLES without innodb_*)',
  order_by: 'expects no InnoDB (SHOW VARIABLES without innodb_*)',
  // Run as root (this machine's tests): mtr itself skips them ("Not as root").
  trigger: 'skipped by mtr as root', varbinary: 'skipped by mtr as root',
  // Debug builds, Windows, the embedded server, a restart: mtr skips them or they need the server restarted.
  init_file: 'needs --init-file at server start', bad_frm_crash_5029: 'a damaged .frm copied in needs a fresh table cache (restart)',
};

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
 * empties the databases the tests use and resets the global sql_mode before each test, silently: a test's
 * output is what it was.
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
    // mtr's check-testcase would catch a global a stopped test left changed (view.test sets GLOBAL
    // sql_mode="" and restores it 35 lines later) and restart the server; the server runs on its defaults.
    'SET GLOBAL sql_mode = DEFAULT;',
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

/**
 * One mtr run of `tests` on one route in one mode; results by test name. `vardir` is the server's own
 * (its secure-file-priv, holding its data directory: test/support/mariadb-mtr.ts), as when mtr starts the
 * server: the tests' $MYSQLTEST_VARDIR and $MYSQLD_DATADIR are then where mysqltest may read and write
 * files, and the files the server writes are where the tests look for them. mtr keeps an extern server's
 * vardir; each run starts with an empty log directory.
 */
export async function runMtr(route: MtrRoute, tests: string[], mode: MtrMode, vardir: string): Promise<Map<string, MtrOutcome>> {
  fs.rmSync(path.join(vardir, 'log'), { recursive: true, force: true });
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
  const env = { ...process.env, MYSQL_TEST: mysqltestWithPrologue(vardir) };
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
export async function compareMtr(direct: MtrRoute, vigil: MtrRoute, tests: string[], vardir: string, reset: () => Promise<void>, modes: MtrMode[] = ['normal', 'ps', 'cursor']): Promise<MtrRow[]> {
  const rows = new Map<string, MtrRow>(tests.map((t) => [t, { test: t, status: {} as MtrRow['status'], differs: {} }]));
  for (const mode of modes) {
    // A failing test leaves its tables behind: each run starts from the same server state.
    await reset();
    const d = await runMtr(direct, tests, mode, vardir);
    await reset();
    const v = await runMtr(vigil, tests, mode, vardir);
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
  // Per mode: pass / fail / skipped on each route, and how many tests differ.
  const count = (m: MtrMode, side: 0 | 1) => ['pass', 'fail', 'skipped'].map((st) => rows.filter((r) => r.status[m][side] === st).length).join(' / ');
  lines.push('', markdown ? '| mode | direct: pass / fail / skipped | through vigil: pass / fail / skipped | tests that differ |' : 'mode: direct pass/fail/skipped; vigil pass/fail/skipped; differ');
  if (markdown) lines.push('|---|---|---|---|');
  for (const m of modes) {
    const n = rows.filter((r) => r.differs[m]).length;
    lines.push(markdown ? `| ${m} | ${count(m, 0)} | ${count(m, 1)} | ${n} |` : `${m}: ${count(m, 0)}; ${count(m, 1)}; ${n}`);
  }
  lines.push('', `${rows.length} tests x ${modes.length} modes, ${differ.length} tests differ${differ.length ? ':' : ''}`);
  for (const r of differ) for (const [m, d] of Object.entries(r.differs)) lines.push(`- ${r.test} (${m}): ${d}`);
  return lines.join('\n');
}
