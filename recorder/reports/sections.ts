/**
 * The report's sections as titled tables of text, shared by the Markdown and HTML renderers so both show
 * exactly the same rows and columns.
 */
import type { ReportModel, VerificationSummary } from './model.ts';

export interface Table {
  columns: string[];
  rows: string[][];
  /** Shown instead of an empty table. */
  empty: string;
}

export interface Section {
  id: string;
  title: string;
  intro?: string;
  table(m: ReportModel): Table;
}

export const SUMMARY_FIGURES: { key: keyof ReportModel['summary']; label: string }[] = [
  { key: 'sessions', label: 'Sessions' },
  { key: 'people', label: 'People with sessions' },
  { key: 'targets', label: 'Targets used' },
  { key: 'changes', label: 'Changes (data, schema, configuration, files)' },
  { key: 'unclassified', label: 'Unclassified statements' },
  { key: 'denied_or_failed', label: 'Denied or failed attempts' },
  { key: 'grants', label: 'Just-in-time grants' },
  { key: 'break_glass', label: 'Break-glass requests' },
  { key: 'grants_unused', label: 'Grants never used' },
  { key: 'certificates_issued', label: 'Certificates issued' },
  { key: 'certificates_expired', label: 'Certificates expired' },
  { key: 'certificates_revoked', label: 'Certificates revoked' },
  { key: 'events', label: 'Audit events in the period' },
];

const list = (xs: string[] | undefined) => (xs && xs.length ? xs.join(', ') : '-');
const opt = (x: string | undefined) => x ?? '-';
const duration = (ms: number) => {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
};

export function verificationText(v: VerificationSummary): string {
  const cp = v.checkpoint ? `; signed checkpoint seq ${v.checkpoint.seq} (${v.checkpoint.time}) signs seq 1..${v.checkpoint.signs_seq}, head ${v.checkpoint.head}` : '';
  const what: Record<VerificationSummary['status'], string> = {
    complete: 'intact, signed and complete up to a witnessed head',
    unwitnessed: 'intact and signed (completeness not proven without a witness)',
    'unsealed-tail': 'intact, with records after the last checkpoint not yet signed',
    invalid: 'INVALID',
    unreadable: 'UNREADABLE',
  };
  const si = v.shared_index;
  const shared = si ? `; events of ${si.chains.length} replica chain(s) (${si.chains.join(', ')}) from the shared index: ${si.ok ? 'every chain intact and signed' : `INVALID: ${si.problem}`}` : '';
  const leftOut = v.records_left_out ? `; ${v.records_left_out} record(s) of the period LEFT OUT of this report: their bytes do not match their hash (damaged or altered; run vigil audit verify)` : '';
  return `${what[v.status]}: ${v.records} records in ${v.segments} segment(s), ${v.checkpoints} checkpoint(s), last seq ${v.last_seq}${cp}${v.problem ? `; ${v.problem}` : ''}${shared}${leftOut}`;
}

const grantRow = (g: ReportModel['grants'][number]) => [
  g.user, g.role, list(g.targets), g.reason, g.break_glass ? 'yes' : 'no', list(g.approvers), g.state, g.requested_at, opt(g.granted_at), opt(g.expires_at), String(g.sessions),
];
const GRANT_COLUMNS = ['User', 'Role', 'Targets', 'Reason', 'Break-glass', 'Approved by', 'State', 'Requested', 'Granted', 'Expires', 'Sessions'];

export const SECTIONS: Section[] = [
  {
    id: 'access',
    title: 'Who had access to what',
    intro: 'Per person: the roles of their certificates valid in the period and the targets those roles reach under the current policy, plus just-in-time grants.',
    table: (m) => ({
      columns: ['User', 'Certificate roles', 'Targets reachable', 'Just-in-time grants', 'Sessions'],
      rows: m.access.map((a) => [a.user, list(a.roles), list(a.targets), list(a.granted), String(a.sessions)]),
      empty: 'Nobody held a certificate or grant in the period.',
    }),
  },
  {
    id: 'grants',
    title: 'When and why: requests and grants',
    intro: 'Just-in-time requests and grants whose life touches the period: reasons, approvers, break-glass.',
    table: (m) => ({ columns: GRANT_COLUMNS, rows: m.grants.map(grantRow), empty: 'No access requests or grants in the period.' }),
  },
  {
    id: 'certificates',
    title: 'Certificates',
    table: (m) => ({
      columns: ['Serial', 'User', 'Roles', 'Kind', 'Valid from', 'Valid until', 'Status', 'Revoked', 'Revocation reason'],
      rows: m.certificates.map((c) => [c.serial, c.user, list(c.roles), c.kind, c.not_before, c.not_after, c.status, opt(c.revoked_at), c.revoke_reason ? `${c.revoke_reason} (by ${c.revoked_by})` : '-']),
      empty: 'No certificate was valid in the period.',
    }),
  },
  {
    id: 'break-glass',
    title: 'Break-glass uses',
    table: (m) => ({ columns: GRANT_COLUMNS, rows: m.break_glass.map(grantRow), empty: 'No break-glass request in the period.' }),
  },
  {
    id: 'sessions',
    title: 'Sessions per person and target',
    table: (m) => ({
      columns: ['User', 'Target', 'Protocol', 'Sessions', 'Time connected', 'Statements', 'Commands', 'File writes'],
      rows: m.sessions.per_person_target.map((r) => [r.user, r.target, r.protocol, String(r.sessions), duration(r.duration_ms), String(r.statements), String(r.commands), String(r.file_writes)]),
      empty: 'No sessions in the period.',
    }),
  },
  {
    id: 'changes',
    title: 'Changes to data and configuration',
    intro: 'SQL classified by the database grammar (DDL, DML, ALTER SYSTEM / SET GLOBAL, GRANT and roles, DO/CALL), shell commands that edit files, control services or packages, and SFTP/scp writes.',
    table: (m) => ({
      columns: ['Time', 'User', 'Target', 'Kind', 'Class', 'Statement or command', 'Outcome', 'Detail'],
      rows: m.changes.map((c) => [c.time, c.user, c.target, c.channel, c.class, c.text, c.outcome, opt(c.detail)]),
      empty: 'No change recorded in the period.',
    }),
  },
  {
    id: 'unclassified',
    title: 'Unclassified statements',
    intro: 'Statements the SQL parser of the target\'s dialect does not accept, EXECUTEs of statements prepared outside the period, and shell commands running code the classifier cannot read (python -c, perl -e…): listed here rather than guessed at.',
    table: (m) => ({
      columns: ['Time', 'User', 'Target', 'Statement', 'Outcome', 'Parser message'],
      rows: m.unclassified.map((c) => [c.time, c.user, c.target, c.text, c.outcome, opt(c.detail)]),
      empty: 'None.',
    }),
  },
  {
    id: 'denied',
    title: 'Denied and failed attempts',
    table: (m) => ({
      columns: ['Time', 'User', 'Target', 'Event', 'Source', 'Count', 'Reason'],
      rows: m.denied.map((d) => [d.time, d.user, d.target, d.type, d.source, String(d.count), d.reason]),
      empty: 'No denied or failed attempt in the period.',
    }),
  },
  {
    id: 'unused',
    title: 'Grants never used',
    intro: 'Granted access under which no session was opened within the period.',
    table: (m) => ({ columns: GRANT_COLUMNS, rows: m.grants_unused.map(grantRow), empty: 'Every grant was used.' }),
  },
];
