/**
 * The access-review report as data: one model that the JSON, Markdown and HTML renderers all show.
 * Built from the audit events of the period, the state store's grants, certificates and revocations, and
 * the chain verification result. Pure: no files, no sockets (see source.ts for where the inputs come from).
 */
import type { AuditEvent } from '../../src/events/envelope.ts';
import type { AccessRecord, IssuedCertRecord, RevocationRecord } from '../../src/store/types.ts';
import type { VerifyResult } from '../audit/verify.ts';
import { CHANGING_SQL, classifySql, resolveExecutes, type PreparedSql, type SqlClass } from './classify-sql.ts';
import { classifyShellLine, isScpWrite, isSftpWrite, type SshChangeClass } from './classify-ssh.ts';

export const REPORT_KIND = 'vigil.access-review';

export interface ReportPeriod {
  since: string;
  until: string;
}

export interface GrantRow {
  id: string;
  user: string;
  role: string;
  targets: string[];
  reason: string;
  state: string;
  break_glass: boolean;
  requested_at: string;
  granted_at?: string;
  expires_at?: string;
  approvers: string[];
  decided_by?: string;
  decision_reason?: string;
  /** Sessions opened under this grant within the period. */
  sessions: number;
}

/** Per person: what their certificates' roles and their grants let them reach during the period. */
export interface AccessRow {
  user: string;
  /** Roles carried by certificates valid in the period. */
  roles: string[];
  /** Targets those roles reach (from the configured policy at report time). */
  targets: string[];
  /** Roles granted just in time (active at some time in the period), with their targets. */
  granted: string[];
  sessions: number;
}

export interface CertRow {
  serial: string;
  user: string;
  roles: string[];
  kind: string;
  not_before: string;
  not_after: string;
  grant_id?: string;
  status: 'valid' | 'expired' | 'revoked';
  revoked_at?: string;
  revoke_reason?: string;
  revoked_by?: string;
}

export interface SessionRow {
  user: string;
  target: string;
  protocol: string;
  sessions: number;
  /** Sum over the sessions that ended (session.end duration_ms). */
  duration_ms: number;
  statements: number;
  commands: number;
  file_writes: number;
}

export interface ChangeRow {
  time: string;
  user: string;
  target: string;
  protocol: string;
  session_id?: string;
  /** sql, ssh (shell or exec command), sftp, scp. */
  channel: 'sql' | 'ssh' | 'sftp' | 'scp';
  class: SqlClass | SshChangeClass | 'write';
  text: string;
  outcome: string;
  /** The parser's statement kinds (sql), or why it was unclassified. */
  detail?: string;
}

export interface DeniedRow {
  time: string;
  user: string;
  target: string;
  type: string;
  source: string;
  reason: string;
  /** Attempts this row stands for (auth.failure.summary counts several). */
  count: number;
}

export interface VerificationSummary {
  status: VerifyResult['status'] | 'unreadable';
  ok: boolean;
  records: number;
  segments: number;
  checkpoints: number;
  last_seq: number;
  /** The checkpoint the verified (signed) part of the chain ends on. */
  checkpoint?: { seq: number; signs_seq: number; time: string; head: string; key_id?: string };
  problem?: string;
  /** With replicas on a PostgreSQL store: the shared index the events were read from, verified chain by chain. */
  shared_index?: { chains: string[]; ok: boolean; problem?: string };
  /** Records of the period the readers left out because their bytes do not match their hash (damaged or
   *  altered): the report's figures do not count them. Always present in reports made since it existed. */
  records_left_out?: number;
}

export interface ReportModel {
  kind: typeof REPORT_KIND;
  version: 1;
  generated_at: string;
  period: ReportPeriod;
  summary: {
    events: number;
    people: number;
    targets: number;
    sessions: number;
    changes: number;
    unclassified: number;
    denied_or_failed: number;
    grants: number;
    break_glass: number;
    grants_unused: number;
    certificates_issued: number;
    certificates_expired: number;
    certificates_revoked: number;
  };
  access: AccessRow[];
  grants: GrantRow[];
  break_glass: GrantRow[];
  grants_unused: GrantRow[];
  certificates: CertRow[];
  sessions: {
    per_person_target: SessionRow[];
    per_day: { day: string; sessions: number }[];
    per_target: { target: string; sessions: number }[];
  };
  changes: ChangeRow[];
  unclassified: ChangeRow[];
  denied: DeniedRow[];
  verification: VerificationSummary;
}

export interface ReportInputs {
  period: ReportPeriod;
  now: Date;
  /** Audit events of the period, oldest first (checkpoints left out); a stream is consumed as it comes. */
  events: Iterable<AuditEvent> | AsyncIterable<AuditEvent>;
  access: AccessRecord[];
  certs: IssuedCertRecord[];
  revocations: RevocationRecord[];
  verification: VerificationSummary;
  /** Role name → the targets it reaches under the configured policy (empty when not known). */
  roleTargets?: Record<string, string[]>;
}

/**
 * MySQL commands recorded as db.query that execute nothing: the life of a server-side prepared statement
 * around its COM_STMT_EXECUTE (the prepare, the close and reset, and COM_STMT_FETCH, which continues an
 * execution's cursor) and connection upkeep. mysql2's execute() and JDBC send prepare, execute and close,
 * each carrying the text: only the execution is the statement. (Postgres records one db.query per Execute;
 * Parse and Bind are recorded only when they fail.)
 */
const MYSQL_NOT_EXECUTIONS = new Set(['COM_STMT_CLOSE', 'COM_STMT_RESET', 'COM_STMT_FETCH', 'COM_STMT_SEND_LONG_DATA', 'COM_PING', 'COM_QUIT', 'COM_SET_OPTION', 'COM_RESET_CONNECTION', 'COM_CHANGE_USER', 'COM_FIELD_LIST', 'COM_STATISTICS', 'COM_SLEEP', 'COM_DEBUG']);

const str = (v: unknown): string => (typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v));
/** Event times have microseconds; store times milliseconds: compare as instants. */
const ms = (t: string | undefined) => (t ? Date.parse(t) : NaN);

/**
 * Build the report model (call loadSqlParsers() first: SQL is classified while building). Events are
 * consumed one by one; what is kept is the aggregates and the rows the report lists.
 */
export async function buildReportModel(input: ReportInputs): Promise<ReportModel> {
  const { period, events } = input;
  const sinceMs = ms(period.since);
  const untilMs = ms(period.until);

  // Sessions, and what ran in them.
  const sessionRows = new Map<string, SessionRow>();
  const sessionKey = new Map<string, string>();
  const perDay = new Map<string, number>();
  const perTarget = new Map<string, number>();
  const grantSessions = new Map<string, number>();
  const rowOf = (e: AuditEvent): SessionRow | undefined => {
    const key = e.session_id !== undefined ? sessionKey.get(e.session_id) : undefined;
    return key ? sessionRows.get(key) : undefined;
  };
  const changes: ChangeRow[] = [];
  const unclassified: ChangeRow[] = [];
  const denied: DeniedRow[] = [];
  const people = new Set<string>();
  const base = (e: AuditEvent) => ({ time: e.time, user: e.actor?.user ?? '', target: e.target?.name ?? '', protocol: e.target?.protocol ?? '', session_id: e.session_id, outcome: e.outcome });
  const deny = (e: AuditEvent, reason: string, count = 1) =>
    denied.push({ time: e.time, user: e.actor?.user ?? '', target: e.target?.name ?? '', type: e.type, source: e.source?.ip ?? '', reason, count });

  // A guardrail refusal is written twice: guardrail.blocked/unparsed (counted as denied) and the statement
  // or command record it refused (ssh.exec, ssh.command, db.query, failure). Refusals not yet matched to
  // their record, per session, so the one attempt is denied once and never counted as a change.
  const guardRefusals = new Map<string, string[]>();
  const refusalKey = (e: AuditEvent) => `${e.session_id ?? ''}\u0000${e.target?.name ?? ''}`;
  const takeRefusal = (e: AuditEvent, rule: string): boolean => {
    const pending = guardRefusals.get(refusalKey(e));
    const at = pending?.indexOf(rule) ?? -1;
    if (at < 0) return false;
    pending!.splice(at, 1);
    return true;
  };

  // Statements prepared by name with SQL PREPARE, per session: what an EXECUTE of them runs.
  const preparedBySession = new Map<string, Map<string, PreparedSql>>();

  let eventCount = 0;
  for await (const e of events) {
    eventCount++;
    const d = e.details ?? {};
    switch (e.type) {
      case 'session.start': {
        const key = `${e.actor.user}\u0000${e.target.name}`;
        if (e.session_id !== undefined) sessionKey.set(e.session_id, key);
        let row = sessionRows.get(key);
        if (!row) sessionRows.set(key, (row = { user: e.actor.user, target: e.target.name, protocol: e.target.protocol, sessions: 0, duration_ms: 0, statements: 0, commands: 0, file_writes: 0 }));
        row.sessions++;
        people.add(e.actor.user);
        const day = e.time.slice(0, 10);
        perDay.set(day, (perDay.get(day) ?? 0) + 1);
        perTarget.set(e.target.name, (perTarget.get(e.target.name) ?? 0) + 1);
        for (const g of Array.isArray(d.grant_ids) ? d.grant_ids : []) grantSessions.set(str(g), (grantSessions.get(str(g)) ?? 0) + 1);
        break;
      }
      case 'session.end': {
        const row = rowOf(e);
        if (row && typeof d.duration_ms === 'number') row.duration_ms += d.duration_ms;
        if (e.session_id !== undefined) preparedBySession.delete(e.session_id);
        break;
      }
      case 'db.query': {
        const command = str(d.command);
        if (e.target.protocol === 'mysql' && MYSQL_NOT_EXECUTIONS.has(command)) break;
        const sql = str(d.sql ?? d.query);
        const c0 = sql ? classifySql(e.target.protocol, sql) : undefined;
        // A prepare (COM_STMT_PREPARE, SQL PREPARE) runs nothing: the execution is the statement. A failed
        // prepare is still a failed attempt, reported as such below.
        const prepareOnly = (e.target.protocol === 'mysql' && command === 'COM_STMT_PREPARE') || c0?.preparesOnly === true;
        const row = rowOf(e);
        if (row && !prepareOnly) row.statements++;
        const refusedBy = e.outcome === 'failure' ? guardrailOf(d.error) : undefined;
        if (refusedBy !== undefined && takeRefusal(e, refusedBy)) break;
        if (prepareOnly && e.outcome !== 'failure') {
          if (c0?.prepares?.length) {
            const session = e.session_id ?? '';
            const prepared = preparedBySession.get(session) ?? new Map<string, PreparedSql>();
            for (const p of c0.prepares) prepared.set(p.name, p);
            preparedBySession.set(session, prepared);
          }
          break;
        }
        if (!c0) {
          // A fastpath function call (Postgres FunctionCall: large objects, lo_import…) carries no SQL, only
          // the function's oid: what it did cannot be read from the record, so it is listed as unclassified.
          if (d.protocol === 'function_call') {
            const oid = typeof d.function_oid === 'number' ? String(d.function_oid) : '?';
            unclassified.push({ ...base(e), channel: 'sql', class: 'unclassified', text: `function call (oid ${oid})`, detail: `fastpath function call, function oid ${oid}${Array.isArray(d.params) ? `, ${d.params.length} argument(s)` : ''}` });
          } else if (command === 'COM_STMT_EXECUTE' && e.outcome !== 'failure') {
            // An execution whose statement text the gateway did not know: it ran, so it is listed.
            unclassified.push({ ...base(e), channel: 'sql', class: 'unclassified', text: `execute of prepared statement ${str(d.statement_id) || '?'}`, detail: 'server-side prepared statement whose text is not in the record' });
          }
          break;
        }
        // EXECUTE of a statement this session prepared with SQL PREPARE does what that statement does.
        const c = resolveExecutes(c0, (name) => preparedBySession.get(e.session_id ?? '')?.get(name));
        const change: ChangeRow = { ...base(e), channel: 'sql', class: c.class, text: sql, detail: c.error ?? c.kinds.join(', ') };
        if (c.class === 'unclassified') unclassified.push(change);
        else if (CHANGING_SQL.has(c.class)) {
          if (e.outcome === 'failure') deny(e, `${c.class} statement failed (${errorText(d.error)}): ${sql}`);
          else changes.push(change);
        }
        break;
      }
      case 'ssh.exec':
      case 'ssh.command': {
        const row = rowOf(e);
        if (row) row.commands++;
        const cmd = str(d.command);
        // Refused by a guardrail: it never reached the target, so it is no change; it is denied once (by
        // its guardrail event, or here when that event is not in the period).
        const refusedBy = typeof d.refused_by === 'string' ? d.refused_by : /^refused by guardrail (.*)$/.exec(str(d.error))?.[1];
        if (refusedBy !== undefined) {
          if (!takeRefusal(e, refusedBy)) deny(e, `command refused by guardrail ${refusedBy}: ${cmd}`);
          break;
        }
        const c = cmd ? classifyShellLine(cmd) : {};
        const how = e.type === 'ssh.exec' ? `exec, exit ${str(d.exit_status) || '?'}` : `shell (${str(d.source) || 'terminal'})`;
        if (c.change) changes.push({ ...base(e), channel: 'ssh', class: c.change, text: cmd, detail: how });
        // Code the classifier cannot read (python -c, perl -e…) may change anything: listed, not taken for a read.
        else if (c.opaque) unclassified.push({ ...base(e), channel: 'ssh', class: 'unclassified', text: cmd, detail: `${how}; ${c.opaque}` });
        break;
      }
      case 'ssh.sftp':
      case 'ssh.scp': {
        const write = e.type === 'ssh.sftp' ? isSftpWrite(d) : isScpWrite(d);
        if (!write) break;
        const row = rowOf(e);
        if (row) row.file_writes++;
        const text = e.type === 'ssh.sftp'
          ? `${str(d.op)} ${str(d.path ?? d.old_path)}${d.new_path ? ` -> ${str(d.new_path)}` : ''}${Array.isArray(d.flags) ? ` (${d.flags.join(',')})` : ''}`
          : `upload ${str(d.path)}${typeof d.bytes === 'number' ? ` (${d.bytes} bytes)` : ''}`;
        if (e.outcome === 'failure') deny(e, `${e.type === 'ssh.sftp' ? 'SFTP' : 'scp'} write failed: ${text} ${str(d.result ?? d.error)}`.trim());
        else changes.push({ ...base(e), channel: e.type === 'ssh.sftp' ? 'sftp' : 'scp', class: 'write', text, detail: str(d.result) || undefined });
        break;
      }
      case 'auth.failure':
        deny(e, str(d.reason ?? d.code) || 'refused');
        break;
      case 'guardrail.blocked':
      case 'guardrail.unparsed': {
        const what = str(d.command ?? d.sql ?? d.query) || (d.hidden ? '(hidden line)' : '');
        deny(e, `${e.type === 'guardrail.unparsed' ? 'unparsable, refused' : d.decision === 'require_approval' ? 'needs approval, refused' : 'refused'} by guardrail ${str(d.rule)} (${str(d.reason)}): ${what}`);
        const key = refusalKey(e);
        const pending = guardRefusals.get(key) ?? [];
        pending.push(str(d.rule));
        guardRefusals.set(key, pending);
        break;
      }
      case 'auth.oidc.failure':
        deny(e, `OIDC sign-in refused: ${str(d.reason) || 'refused'}${d.detail ? ` (${str(d.detail)})` : ''}`);
        break;
      case 'console.signin':
        if (e.outcome === 'failure') deny(e, `console sign-in refused: ${str(d.reason ?? d.code) || 'refused'}`);
        break;
      case 'access.link_refused':
        deny(e, `approval link refused: ${str(d.code)}${d.reason ? ` (${str(d.reason)})` : ''}`);
        break;
      case 'auth.failure.summary':
        deny(e, `unauthenticated refusals counted, not written one by one: ${Object.entries((d.reasons as Record<string, number>) ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')}`, Number(d.suppressed ?? 0) || 1);
        break;
      case 'access.refused':
        deny(e, `${str(d.action)} refused: ${str(d.reason ?? d.code)}`);
        break;
      case 'access.denied':
        deny(e, `request ${str(d.request_id)} by ${str(d.user)} for role ${str(d.role)} denied by ${e.actor.user}: ${str(d.denial_reason ?? d.reason)}`);
        break;
      case 'ssh.request':
      case 'ssh.forward':
      case 'db.cancel':
        if (e.outcome === 'failure') deny(e, `${str(d.request ?? d.destination ?? d.query)} ${str(d.reason)}`.trim() || 'refused');
        break;
      default:
        break;
    }
  }

  // Grants: every request or grant whose life touches the period.
  const grants: GrantRow[] = input.access
    .filter((a) => {
      const start = ms(a.createdAt);
      const end = Math.max(ms(a.expiresAt) || 0, ms(a.requestExpiresAt) || 0, start);
      return start <= untilMs && end >= sinceMs;
    })
    .map((a) => ({
      id: a.id,
      user: a.user,
      role: a.role,
      // A request not narrowed to targets covers every target its role reaches.
      targets: a.targets.length ? a.targets : (input.roleTargets?.[a.role] ?? []),
      reason: a.reason,
      state: a.state,
      break_glass: a.breakGlass,
      requested_at: a.createdAt,
      granted_at: a.grantedAt,
      expires_at: a.expiresAt,
      approvers: a.approvals.map((x) => x.by),
      decided_by: a.decidedBy,
      decision_reason: a.decisionReason,
      sessions: grantSessions.get(a.id) ?? 0,
    }));
  const granted = grants.filter((g) => g.granted_at !== undefined);
  const unused = granted.filter((g) => g.sessions === 0);

  // Certificates valid at some time in the period, with what became of them.
  const revoked = new Map(input.revocations.map((r) => [r.serial, r]));
  const certificates: CertRow[] = input.certs.map((c) => {
    const r = revoked.get(c.serial);
    const status: CertRow['status'] = r && ms(r.time) <= untilMs ? 'revoked' : ms(c.notAfter) <= untilMs ? 'expired' : 'valid';
    return {
      serial: c.serial, user: c.user, roles: c.roles, kind: c.kind, not_before: c.notBefore, not_after: c.notAfter, grant_id: c.grantId, status,
      ...(status === 'revoked' ? { revoked_at: r!.time, revoke_reason: r!.reason, revoked_by: r!.by } : {}),
    };
  });
  const issuedInPeriod = certificates.filter((c) => ms(c.not_before) >= sinceMs && ms(c.not_before) <= untilMs);

  // Who could reach what: certificate roles and grants per person, with the targets those reach.
  const people2 = new Map<string, { roles: Set<string>; granted: Set<string>; targets: Set<string> }>();
  const personOf = (u: string) => {
    let p = people2.get(u);
    if (!p) people2.set(u, (p = { roles: new Set(), granted: new Set(), targets: new Set() }));
    return p;
  };
  for (const c of certificates) {
    if (c.status === 'revoked' && ms(c.revoked_at) < sinceMs) continue;
    const p = personOf(c.user);
    for (const r of c.roles) {
      p.roles.add(r);
      for (const t of input.roleTargets?.[r] ?? []) p.targets.add(t);
    }
  }
  for (const g of granted) {
    const p = personOf(g.user);
    p.granted.add(`${g.role} (${g.targets.join(', ') || 'no target'})`);
    for (const t of g.targets) p.targets.add(t);
  }
  const sessionsOf = new Map<string, number>();
  for (const r of sessionRows.values()) sessionsOf.set(r.user, (sessionsOf.get(r.user) ?? 0) + r.sessions);
  const access: AccessRow[] = [...people2]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([user, p]) => ({ user, roles: [...p.roles].sort(), targets: [...p.targets].sort(), granted: [...p.granted].sort(), sessions: sessionsOf.get(user) ?? 0 }));

  const perPersonTarget = [...sessionRows.values()].sort((a, b) => a.user.localeCompare(b.user) || a.target.localeCompare(b.target));
  return {
    kind: REPORT_KIND,
    version: 1,
    generated_at: input.now.toISOString(),
    period,
    summary: {
      events: eventCount,
      people: people.size,
      targets: perTarget.size,
      sessions: perPersonTarget.reduce((n, r) => n + r.sessions, 0),
      changes: changes.length,
      unclassified: unclassified.length,
      denied_or_failed: denied.reduce((n, r) => n + r.count, 0),
      grants: granted.length,
      break_glass: grants.filter((g) => g.break_glass).length,
      grants_unused: unused.length,
      certificates_issued: issuedInPeriod.length,
      certificates_expired: certificates.filter((c) => c.status === 'expired').length,
      certificates_revoked: certificates.filter((c) => c.status === 'revoked').length,
    },
    access,
    grants,
    break_glass: grants.filter((g) => g.break_glass),
    grants_unused: unused,
    certificates,
    sessions: {
      per_person_target: perPersonTarget,
      per_day: fillDays(period, perDay),
      per_target: [...perTarget].map(([target, sessions]) => ({ target, sessions })).sort((a, b) => b.sessions - a.sessions || a.target.localeCompare(b.target)),
    },
    changes,
    unclassified,
    denied,
    verification: input.verification,
  };
}

/** The rule named by a statement's error when a guardrail refused it (refusalMessage in src/guardrails). */
function guardrailOf(err: unknown): string | undefined {
  const text = err && typeof err === 'object' ? str((err as Record<string, unknown>).message) : str(err);
  return /vigil guardrail "([^"]*)" refused this statement/.exec(text)?.[1];
}

function errorText(err: unknown): string {
  if (err && typeof err === 'object') {
    const o = err as Record<string, unknown>;
    return [o.code, o.message].filter(Boolean).map(String).join(' ') || 'error';
  }
  return str(err) || 'error';
}

/** Every UTC day of the period (zero where nothing happened), so the chart's axis is the period itself. */
function fillDays(period: ReportPeriod, counts: Map<string, number>): { day: string; sessions: number }[] {
  const out: { day: string; sessions: number }[] = [];
  const start = new Date(period.since.slice(0, 10) + 'T00:00:00Z').getTime();
  const end = new Date(period.until.slice(0, 10) + 'T00:00:00Z').getTime();
  // A very long period would make a chart of thousands of bars: then only days with sessions are shown.
  if (!(end >= start) || (end - start) / 86_400_000 > 400) return [...counts].sort().map(([day, sessions]) => ({ day, sessions }));
  for (let t = start; t <= end; t += 86_400_000) {
    const day = new Date(t).toISOString().slice(0, 10);
    out.push({ day, sessions: counts.get(day) ?? 0 });
  }
  return out;
}
