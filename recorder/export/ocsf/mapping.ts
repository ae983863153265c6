import { isIP } from 'node:net';
import path from 'node:path/posix';
import type { AuditEvent } from '../../../src/events/envelope.ts';
import type { EventType } from '../../../src/events/catalog.ts';

/**
 * vigil audit events as OCSF 1.8.0 events. Each catalog type maps to one class (a table in README.md
 * "OCSF classes"); a new catalog type does not compile until it is mapped here. Common to all: metadata
 * (product vigil, schema version, the vigil event id as metadata.uid and its type as event_code), time
 * (epoch ms), status_id from the outcome (unknown → 0), severity_id, actor.user, src_endpoint (an IP as ip,
 * `local` as name), dst_endpoint (the target), and the vigil envelope's time (µs), session and details in
 * `unmapped.vigil`, so nothing recorded is lost in translation.
 */
export const OCSF_VERSION = '1.8.0';

type Ocsf = Record<string, unknown>;

let productVersion = '0.0.0';
/** The vigil version written to metadata.product.version. */
export function setProductVersion(v: string): void {
  productVersion = v;
}

interface ClassInfo {
  class_uid: number;
  class_name: string;
  category_uid: number;
  category_name: string;
  /** Which endpoints the class has (the target is always in unmapped.vigil as well). */
  src?: true;
  dst?: true;
  /** The class has `actor` only through the host profile: metadata.profiles then lists `host`. */
  hostProfile?: true;
}

const C = {
  fileActivity: { class_uid: 1001, class_name: 'File System Activity', category_uid: 1, category_name: 'System Activity' },
  accountChange: { class_uid: 3001, class_name: 'Account Change', category_uid: 3, category_name: 'Identity & Access Management', src: true },
  authentication: { class_uid: 3002, class_name: 'Authentication', category_uid: 3, category_name: 'Identity & Access Management', src: true, dst: true },
  authorizeSession: { class_uid: 3003, class_name: 'Authorize Session', category_uid: 3, category_name: 'Identity & Access Management', src: true, dst: true },
  entityManagement: { class_uid: 3004, class_name: 'Entity Management', category_uid: 3, category_name: 'Identity & Access Management', src: true },
  userAccess: { class_uid: 3005, class_name: 'User Access Management', category_uid: 3, category_name: 'Identity & Access Management', src: true },
  networkActivity: { class_uid: 4001, class_name: 'Network Activity', category_uid: 4, category_name: 'Network Activity', src: true, dst: true, hostProfile: true },
  sshActivity: { class_uid: 4007, class_name: 'SSH Activity', category_uid: 4, category_name: 'Network Activity', src: true, dst: true, hostProfile: true },
  appLifecycle: { class_uid: 6002, class_name: 'Application Lifecycle', category_uid: 6, category_name: 'Application Activity', hostProfile: true },
  apiActivity: { class_uid: 6003, class_name: 'API Activity', category_uid: 6, category_name: 'Application Activity', src: true, dst: true },
  datastore: { class_uid: 6005, class_name: 'Datastore Activity', category_uid: 6, category_name: 'Application Activity', src: true, dst: true },
} as const satisfies Record<string, ClassInfo>;

const DB_PROTOCOLS = new Set(['postgres', 'mysql']);
const OTHER = 99;

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Leave out undefined members (OCSF consumers, and the validator, treat present-but-null as a value). */
function compact<T extends Ocsf>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}

function userObject(name: string | undefined): Ocsf {
  return { name: name ?? 'unknown' };
}

function srcEndpoint(e: AuditEvent): Ocsf {
  const ip = e.source?.ip ?? 'unknown';
  return compact({ ip: isIP(ip) ? ip : undefined, name: isIP(ip) ? undefined : ip, port: num(e.source?.port), svc_name: str(e.source?.via) });
}

function dstEndpoint(e: AuditEvent): Ocsf {
  return compact({ name: e.target?.name ?? 'unknown', hostname: str(e.target?.host), svc_name: str(e.target?.protocol) });
}

function actorOf(e: AuditEvent): Ocsf {
  return compact({ user: compact({ name: e.actor?.user ?? 'unknown', credential_uid: str(e.actor?.cert_serial) }), session: e.session_id ? { uid: e.session_id } : undefined });
}

const STATUS = { success: [1, 'Success'], failure: [2, 'Failure'], unknown: [0, 'Unknown'] } as const;
const SEVERITY: Record<number, string> = { 1: 'Informational', 2: 'Low', 3: 'Medium' };

/** Failures a SOC should look at sooner than routine refusals. */
const NOTABLE_FAILURES = new Set<EventType>([
  'auth.failure', 'auth.oidc.failure', 'auth.failure.summary', 'access.refused', 'access.link_refused', 'ssh.request', 'api.request', 'guardrail.blocked', 'guardrail.unparsed',
]);

interface Mapped {
  cls: ClassInfo;
  activity_id: number;
  activity_name: string;
  /** Class-specific attributes. */
  attrs?: Ocsf;
  message?: string;
}

function sessionActivity(e: AuditEvent, open: boolean): Mapped {
  const protocol = e.target?.protocol;
  if (protocol === 'ssh') return { cls: C.sshActivity, activity_id: open ? 1 : 2, activity_name: open ? 'Open' : 'Close' };
  if (DB_PROTOCOLS.has(protocol ?? '')) {
    return open
      ? { cls: C.datastore, activity_id: 3, activity_name: 'Connect', attrs: { database: database(e), type_id: 1, type: 'Database' } }
      : { cls: C.datastore, activity_id: OTHER, activity_name: 'Disconnect', attrs: { database: database(e), type_id: 1, type: 'Database' } };
  }
  return { cls: C.networkActivity, activity_id: open ? 1 : 2, activity_name: open ? 'Open' : 'Close' };
}

/** A guardrail refusal: SSH Activity Refuse, or Datastore Activity Other named Refuse; naming the rule; the statement in query_info. */
function guardrailRefusal(e: AuditEvent): Mapped {
  const rule = str(e.details?.rule) ?? '?';
  if (e.target?.protocol === 'ssh') return { cls: C.sshActivity, activity_id: 5, activity_name: 'Refuse', message: `guardrail ${rule} refused: ${str(e.details?.command) ?? ''}` };
  // Datastore Activity has no Refuse (its 5 is Write): Other, named Refuse, with the Failure status.
  return {
    cls: C.datastore,
    activity_id: OTHER,
    activity_name: 'Refuse',
    message: `guardrail ${rule} refused on ${e.target?.name}: ${clip(queryText(e))}`,
    attrs: { database: database(e), query_info: { query_string: queryText(e), uid: e.id }, type_id: 1, type: 'Database' },
  };
}

function database(e: AuditEvent): Ocsf {
  return compact({ name: str(e.target?.database) ?? e.target?.name ?? 'unknown', type_id: 1, type: 'Relational', uid: str(e.target?.name) });
}

function queryText(e: AuditEvent): string {
  const d = e.details ?? {};
  return str(d.sql) ?? str(d.query) ?? str(d.command) ?? '';
}

/** A statement's first line, shortened, for `message` (the whole text is in query_info). */
function clip(text: string): string {
  const line = text.split('\n', 1)[0];
  return line.length > 120 || text.includes('\n') ? `${line.slice(0, 120)}…` : line;
}

function userAccess(e: AuditEvent, activity_id: number, activity_name: string): Mapped {
  const d = e.details ?? {};
  const role = str(d.role);
  return {
    cls: C.userAccess,
    activity_id,
    activity_name,
    attrs: { user: userObject(str(d.user) ?? e.actor?.user), privileges: role ? [role] : [] },
    message: `${activity_name}${role ? ` role ${role}` : ''}${str(d.user) ? ` for ${d.user}` : ''}`,
  };
}

/** session.kill / session.watch_*: an admin or auditor acting on another user's live session. */
function sessionControl(e: AuditEvent, activity_name: string): Mapped {
  const d = e.details ?? {};
  const id = str(d.session_id);
  return {
    cls: C.authorizeSession,
    activity_id: OTHER,
    activity_name,
    attrs: { user: userObject(str(d.session_user) ?? 'unknown'), privileges: [], session: id ? { uid: id } : undefined },
    message: `${activity_name} ${id ?? ''} by ${e.actor?.user ?? 'unknown'}${str(d.reason) ? `: ${d.reason}` : ''}`,
  };
}

function lifecycle(e: AuditEvent, activity_id: number, activity_name: string): Mapped {
  const name = e.type.startsWith('audit.') ? 'vigil audit log' : 'vigil gateway';
  return { cls: C.appLifecycle, activity_id, activity_name, attrs: { app: { name, vendor_name: 'vigil', version: productVersion } } };
}

function fileActivity(e: AuditEvent): Mapped {
  const d = e.details ?? {};
  const op = str(d.op) ?? 'unknown';
  const file = (p: string | undefined, dir: boolean): Ocsf => compact({ name: path.basename(p ?? '') || (p ?? 'unknown'), path: p, type_id: dir ? 2 : 1, type: dir ? 'Folder' : 'Regular File' });
  let activity: [number, string];
  let target: Ocsf;
  if (e.type === 'ssh.scp') {
    const upload = d.direction === 'upload';
    activity = op === 'error' ? [OTHER, 'Transfer Error'] : upload ? [1, 'Create'] : [2, 'Read'];
    target = file(str(d.path), op === 'dir');
  } else {
    const ops: Record<string, [number, string]> = {
      open: [14, 'Open'], close: [OTHER, 'Close'], remove: [4, 'Delete'], rename: [5, 'Rename'], mkdir: [1, 'Create'], rmdir: [4, 'Delete'],
      setstat: [6, 'Set Attributes'], symlink: [1, 'Create'], hardlink: [1, 'Create'], copy: [1, 'Create'], read: [2, 'Read'], write: [3, 'Update'],
    };
    activity = ops[op] ?? [OTHER, op];
    const p = str(d.path) ?? str(d.new_path) ?? str(d.link_path) ?? str(d.to_path);
    target = file(p, op === 'mkdir' || op === 'rmdir');
  }
  return {
    cls: C.fileActivity,
    activity_id: activity[0],
    activity_name: activity[1],
    attrs: { file: target, device: compact({ name: e.target?.name ?? 'unknown', hostname: str(e.target?.host), type_id: 1, type: 'Server' }) },
    message: `${e.type} ${op} ${String(target.path ?? '')}`.trim(),
  };
}

function apiActivity(e: AuditEvent): Mapped {
  const d = e.details ?? {};
  const method = (str(d.method) ?? '').toUpperCase();
  const activity: [number, string] = method === 'POST' ? [1, 'Create'] : method === 'GET' ? [2, 'Read'] : method === 'PUT' || method === 'PATCH' ? [3, 'Update'] : method === 'DELETE' ? [4, 'Delete'] : [OTHER, method || 'Other'];
  return {
    cls: C.apiActivity,
    activity_id: activity[0],
    activity_name: activity[1],
    attrs: { api: compact({ operation: `${method || '-'} ${str(d.path) ?? ''}`.trim(), service: { name: 'vigil api' } }) },
  };
}

const MAPPERS: Record<EventType, (e: AuditEvent) => Mapped> = {
  'cert.issued': (e) => ({ cls: C.entityManagement, activity_id: 1, activity_name: 'Create', attrs: { entity: compact({ type: str(e.details?.kind) ?? 'certificate', uid: str(e.details?.serial), name: `certificate for ${str(e.details?.user) ?? e.target?.name}` }) } }),
  'cert.revoked': (e) => ({ cls: C.entityManagement, activity_id: 9, activity_name: 'Disable', attrs: { entity: compact({ type: 'certificate', uid: str(e.details?.serial), name: e.target?.name ?? 'certificate' }) } }),
  'ca.created': () => ({ cls: C.entityManagement, activity_id: 1, activity_name: 'Create', attrs: { entity: { type: 'certificate authority', name: 'vigil certificate authorities' } } }),
  'ca.rotated': () => ({ cls: C.entityManagement, activity_id: 3, activity_name: 'Update', attrs: { entity: { type: 'certificate authority', name: 'vigil user certificate authorities' } } }),
  'auth.success': (e) => ({ cls: C.authentication, activity_id: 1, activity_name: 'Logon', attrs: { user: userObject(e.actor?.user), session: e.session_id ? { uid: e.session_id } : undefined } }),
  'auth.failure': (e) => ({ cls: C.authentication, activity_id: 1, activity_name: 'Logon', attrs: { user: userObject(e.actor?.user) } }),
  'auth.oidc.success': (e) => ({ cls: C.authentication, activity_id: 1, activity_name: 'Logon', attrs: { user: userObject(e.actor?.user), auth_protocol: 'OpenID Connect', auth_protocol_id: 99 } }),
  'auth.oidc.failure': (e) => ({ cls: C.authentication, activity_id: 1, activity_name: 'Logon', attrs: { user: userObject(e.actor?.user), auth_protocol: 'OpenID Connect', auth_protocol_id: 99 } }),
  'auth.failure.summary': (e) => ({
    cls: C.authentication,
    activity_id: 1,
    activity_name: 'Logon',
    attrs: { user: userObject(e.actor?.user), count: typeof e.details?.suppressed === 'number' ? e.details.suppressed : undefined },
    message: `${String(e.details?.suppressed ?? '?')} further unauthenticated refusals from one source, counted not recorded one by one`,
  }),
  // The session's grants and roles are the privileges assigned to it at its start.
  'session.start': (e) => ({
    cls: C.authorizeSession,
    activity_id: 1,
    activity_name: 'Assign Privileges',
    attrs: { user: userObject(e.actor?.user), privileges: [...(e.actor?.roles ?? []), ...((e.details?.grant_ids as string[] | undefined) ?? []).map((g) => `grant:${g}`)], session: e.session_id ? { uid: e.session_id } : undefined },
  }),
  'session.end': (e) => sessionActivity(e, false),
  // Acting on someone's live session: the session (details.session_id) and its user are what is affected.
  'session.kill': (e) => sessionControl(e, 'Kill Session'),
  'session.watch_started': (e) => sessionControl(e, 'Watch Session'),
  'session.watch_ended': (e) => sessionControl(e, 'Watch Ended'),
  'ssh.exec.start': (e) => ({ cls: C.sshActivity, activity_id: 6, activity_name: 'Traffic', message: `exec started: ${str(e.details?.command) ?? ''}` }),
  'ssh.exec': (e) => ({ cls: C.sshActivity, activity_id: 6, activity_name: 'Traffic', message: `exec: ${str(e.details?.command) ?? ''}` }),
  'ssh.command.start': (e) => ({ cls: C.sshActivity, activity_id: 6, activity_name: 'Traffic', message: e.details?.hidden ? 'hidden line submitted' : `command submitted: ${str(e.details?.command) ?? str(e.details?.keys) ?? ''}` }),
  'ssh.command': (e) => ({ cls: C.sshActivity, activity_id: 6, activity_name: 'Traffic', message: `command: ${str(e.details?.command) ?? ''}` }),
  'ssh.sftp': fileActivity,
  'ssh.scp': fileActivity,
  'ssh.sftp.start': fileActivity,
  'ssh.sftp.undecodable': (e) => ({ cls: C.sshActivity, activity_id: 5, activity_name: 'Refuse', message: `sftp stream not decodable: ${str(e.details?.error) ?? ''}` }),
  'ssh.scp.undecodable': (e) => ({ cls: C.sshActivity, activity_id: 5, activity_name: 'Refuse', message: `scp stream not decodable: ${str(e.details?.error) ?? ''}` }),
  // A forward is recorded as it opens (state open) and again as it closes (state closed, with bytes).
  'ssh.forward': (e) =>
    e.outcome !== 'success'
      ? { cls: C.networkActivity, activity_id: 5, activity_name: 'Refuse', message: `forward to ${str(e.details?.destination) ?? '?'}` }
      : e.details?.state === 'closed'
        ? { cls: C.networkActivity, activity_id: 2, activity_name: 'Close', message: `forward to ${str(e.details?.destination) ?? '?'} closed` }
        : { cls: C.networkActivity, activity_id: 1, activity_name: 'Open', message: `forward to ${str(e.details?.destination) ?? '?'}` },
  // Refused requests, and the signals sent to a target's process (outcome success).
  'ssh.request': (e) =>
    e.outcome === 'success'
      ? { cls: C.sshActivity, activity_id: OTHER, activity_name: 'Other', message: `sent ${str(e.details?.request) ?? 'request'} ${str(e.details?.signal) ?? ''}`.trim() }
      : { cls: C.sshActivity, activity_id: 5, activity_name: 'Refuse', message: `refused ${str(e.details?.request) ?? 'request'}` },
  'db.query.start': (e) => ({ cls: C.datastore, activity_id: 4, activity_name: 'Query', message: `still running on ${e.target?.name}: ${clip(queryText(e))}`, attrs: { database: database(e), query_info: { query_string: queryText(e), uid: e.id }, type_id: 1, type: 'Database' } }),
  'db.query': (e) => ({ cls: C.datastore, activity_id: 4, activity_name: 'Query', message: `${str(e.details?.command) ?? 'statement'} on ${e.target?.name}: ${clip(queryText(e))}`, attrs: { database: database(e), query_info: { query_string: queryText(e), uid: e.id }, type_id: 1, type: 'Database' } }),
  'db.session_query': (e) => ({ cls: C.datastore, activity_id: 4, activity_name: 'Query', message: `vigil session-state query on ${e.target?.name}: ${clip(queryText(e))}`, attrs: { database: database(e), query_info: { query_string: queryText(e), uid: e.id }, type_id: 1, type: 'Database' } }),
  'db.cancel': (e) => ({ cls: C.datastore, activity_id: OTHER, activity_name: 'Cancel', attrs: { database: database(e), type_id: 1, type: 'Database' } }),
  'db.user.provisioned': (e) => ({ cls: C.accountChange, activity_id: 2, activity_name: 'Enable', attrs: { user: userObject(str(e.details?.account)) } }),
  'db.user.granted': (e) => ({ cls: C.userAccess, activity_id: 1, activity_name: 'Assign Privileges', attrs: { user: userObject(str(e.details?.account)), privileges: (e.details?.roles as string[] | undefined) ?? [] } }),
  'db.user.revoked': (e) => ({ cls: C.userAccess, activity_id: 2, activity_name: 'Revoke Privileges', attrs: { user: userObject(str(e.details?.account)), privileges: (e.details?.roles as string[] | undefined) ?? [] } }),
  'db.user.locked': (e) => ({ cls: C.accountChange, activity_id: 9, activity_name: 'Lock', attrs: { user: userObject(str(e.details?.account)) } }),
  'db.user.provisioning_failed': (e) => ({ cls: C.accountChange, activity_id: OTHER, activity_name: 'Provisioning Failed', attrs: { user: userObject(str(e.details?.account)) } }),
  'access.requested': (e) => userAccess(e, OTHER, 'Request'),
  'access.approved': (e) => userAccess(e, 1, 'Assign Privileges'),
  'access.approval': (e) => userAccess(e, OTHER, 'Approve'),
  'access.denied': (e) => userAccess(e, OTHER, 'Deny'),
  'access.refused': (e) => userAccess(e, OTHER, 'Refuse'),
  'access.revoked': (e) => userAccess(e, 2, 'Revoke Privileges'),
  'access.expired': (e) => userAccess(e, 2, 'Revoke Privileges'),
  'access.request_expired': (e) => userAccess(e, OTHER, 'Request Expired'),
  'access.notified': (e) => userAccess(e, OTHER, 'Notify Approvers'),
  'access.reminded': (e) => userAccess(e, OTHER, 'Remind Approvers'),
  'access.escalated': (e) => userAccess(e, OTHER, 'Escalate'),
  'access.progress_notified': (e) => userAccess(e, OTHER, 'Notify Progress'),
  'access.decision_notified': (e) => userAccess(e, OTHER, 'Notify Decision'),
  'access.link_used': (e) => userAccess(e, OTHER, e.details?.decision === 'deny' ? 'Deny' : 'Approve'),
  'access.link_refused': (e) => userAccess(e, OTHER, 'Refuse'),
  'lock.created': (e) => ({ cls: C.accountChange, activity_id: 9, activity_name: 'Lock', attrs: { user: userObject(str(e.details?.user)) } }),
  'lock.deleted': (e) => ({ cls: C.accountChange, activity_id: 12, activity_name: 'Unlock', attrs: { user: userObject(str(e.details?.user)) } }),
  'api.request': apiActivity,
  // Console sign-in is a logon to vigil itself; views read the audit log like an export does.
  'console.signin': (e) => ({ cls: C.authentication, activity_id: 1, activity_name: 'Logon', attrs: { user: userObject(e.actor?.user) } }),
  'console.signout': (e) => ({ cls: C.authentication, activity_id: 2, activity_name: 'Logoff', attrs: { user: userObject(e.actor?.user) } }),
  'console.view': (e) => ({
    cls: C.datastore,
    activity_id: 1,
    activity_name: 'Read',
    attrs: { database: { name: 'vigil audit log', type_id: OTHER, type: 'Audit Log' }, query_info: { query_string: `console ${str(e.details?.view) ?? 'view'} ${e.target?.name ?? ''}`.trim(), uid: e.id }, type_id: OTHER, type: 'Audit Log' },
  }),
  'audit.checkpoint': (e) => lifecycle(e, OTHER, 'Checkpoint'),
  'audit.started': (e) => lifecycle(e, 3, 'Start'),
  'audit.stopped': (e) => lifecycle(e, 4, 'Stop'),
  'audit.export': (e) => ({
    cls: C.datastore,
    activity_id: 1,
    activity_name: 'Read',
    attrs: { database: { name: 'vigil audit log', type_id: OTHER, type: 'Audit Log' }, query_info: { query_string: str(e.details?.filter_text) ?? '', uid: e.id }, type_id: OTHER, type: 'Audit Log' },
  }),
  // An evidence bundle reads the log like an export does.
  'audit.bundle': (e) => ({
    cls: C.datastore,
    activity_id: 1,
    activity_name: 'Read',
    attrs: { database: { name: 'vigil audit log', type_id: OTHER, type: 'Audit Log' }, query_info: { query_string: str(e.details?.filter_text) ?? '', uid: e.id }, type_id: OTHER, type: 'Audit Log' },
  }),
  // A report reads the audit log like an export does.
  'report.generated': (e) => ({
    cls: C.datastore,
    activity_id: 1,
    activity_name: 'Read',
    attrs: { database: { name: 'vigil audit log', type_id: OTHER, type: 'Audit Log' }, query_info: { query_string: `access report ${str(e.details?.since) ?? ''} .. ${str(e.details?.until) ?? ''}`, uid: e.id }, type_id: OTHER, type: 'Audit Log' },
  }),
  'audit.outage': (e) => lifecycle(e, OTHER, 'Outage'),
  'audit.purged': (e) => lifecycle(e, OTHER, 'Purge'),
  // The gateway storing its own evidence (a recording) elsewhere: lifecycle events of kind Other.
  'recording.closed': (e) => lifecycle(e, OTHER, 'Recording Closed'),
  'recording.stored': (e) => lifecycle(e, OTHER, 'Recording Stored'),
  'recording.upload_failed': (e) => lifecycle(e, OTHER, 'Recording Upload Failed'),
  'hold.added': (e) => lifecycle(e, OTHER, 'Legal Hold'),
  'hold.released': (e) => lifecycle(e, OTHER, 'Legal Hold Released'),
  // A refusal before forwarding: the activity of its protocol, Refuse.
  'guardrail.blocked': guardrailRefusal,
  'guardrail.unparsed': guardrailRefusal,
  // A firing is the gateway reporting on itself: an application lifecycle event of kind Other.
  'alert.fired': (e) => lifecycle(e, OTHER, 'Alert'),
  'alert.resolved': (e) => lifecycle(e, OTHER, 'Alert Resolved'),
  'gateway.started': (e) => lifecycle(e, 3, 'Start'),
  'gateway.stopped': (e) => lifecycle(e, 4, 'Stop'),
  'config.reloaded': (e) => lifecycle(e, OTHER, 'Config Reloaded'),
  'config.reload_failed': (e) => lifecycle(e, OTHER, 'Config Reload Failed'),
};

function epochMs(time: string): number {
  return Date.parse(time);
}

/** One vigil event as one OCSF event. */
export function toOcsf(e: AuditEvent): Ocsf {
  const mapper = MAPPERS[e.type];
  // A type from a newer vigil than this exporter: an Application Lifecycle "Other", details kept.
  const m: Mapped = mapper ? mapper(e) : { cls: C.appLifecycle, activity_id: OTHER, activity_name: String(e.type), attrs: { app: { name: 'vigil' } } };
  const [status_id, status] = STATUS[e.outcome] ?? STATUS.unknown;
  const severity_id = e.outcome === 'failure' ? (NOTABLE_FAILURES.has(e.type) ? 3 : 2) : 1;
  const d = e.details ?? {};
  const detail = str(d.reason) ?? str(d.error) ?? str((d.error as { message?: unknown } | undefined)?.message) ?? str(d.message);
  const out: Ocsf = {
    activity_id: m.activity_id,
    activity_name: m.activity_name,
    category_uid: m.cls.category_uid,
    category_name: m.cls.category_name,
    class_uid: m.cls.class_uid,
    class_name: m.cls.class_name,
    type_uid: m.cls.class_uid * 100 + m.activity_id,
    type_name: `${m.cls.class_name}: ${m.activity_name}`,
    time: epochMs(e.time),
    severity_id,
    severity: SEVERITY[severity_id],
    status_id,
    status,
    status_detail: detail,
    message: m.message ?? `${e.type} ${e.outcome}${e.target?.name ? ` (${e.target.name})` : ''}`,
    metadata: compact({
      product: { name: 'vigil', vendor_name: 'vigil', version: productVersion },
      version: OCSF_VERSION,
      uid: e.id,
      event_code: e.type,
      log_name: 'audit',
      correlation_uid: e.session_id,
      profiles: m.cls.hostProfile ? ['host'] : undefined,
    }),
    actor: actorOf(e),
    src_endpoint: m.cls.src ? srcEndpoint(e) : undefined,
    dst_endpoint: m.cls.dst ? dstEndpoint(e) : undefined,
    ...m.attrs,
    unmapped: { vigil: compact({ time: e.time, type: e.type, outcome: e.outcome, session_id: e.session_id, roles: e.actor?.roles, target: e.target, details: e.details }) },
  };
  return compact(out);
}
