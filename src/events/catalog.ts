/**
 * The one catalog of audit event types. Every event written anywhere has a type from this list; a test
 * checks every entry is documented and that events of each type carry the PCI DSS 10.2.2 fields.
 * Add new types here (one line each), grouped by area.
 */
export interface EventTypeInfo {
  /** What happened, for auditors. */
  description: string;
}

export const EVENT_CATALOG = {
  // identity
  'cert.issued': { description: 'A short-lived certificate (SSH + X.509) or token was issued to a user.' },
  'cert.revoked': { description: 'A certificate serial was added to the revocation list.' },
  'ca.created': { description: 'The certificate authorities and gateway keys were created (vigil init).' },
  'ca.rotated': { description: 'The user CAs (SSH and X.509) were replaced (vigil ca rotate): old and new CA public key and serial, and until when certificates of the old CA stay trusted (the end of the last one it issued).' },
  // authentication and sessions
  'auth.success': { description: 'A client authenticated and was authorized for a target; what the proxy refuses about an authorized request (an SSH target with no default login and none named, a login named for a MySQL target with user_provisioning: reason login_not_allowed) is an auth.failure instead. session.start always follows, even for a client that left meanwhile (then session.end at once, reason client_closed, target_reached false).' },
  'auth.failure': { description: 'A client was refused: bad credential, no permission, unknown target, lock, or gateway failing closed; or cut before authenticating by a pre-auth deadline (reason timeout, with the phase), or refused before authenticating for sending what the protocol cannot decode (reason protocol_error, with the phase and the error: another protocol, a malformed, out-of-sequence or oversized handshake message, bytes sent after a PostgreSQL SSLRequest before TLS, a failed TLS handshake on the PostgreSQL or MySQL listener, a failed SSH key exchange); or refused before any credential was checked for what it asked: reason too_many_unauthenticated (details.limit gateway.max_unauthenticated or pre_auth.max_per_source: the unauthenticated allowance was full), replication_refused (a PostgreSQL walsender startup, with the replication value and the target and database asked), method_not_allowed (an SSH password or keyboard-interactive attempt, with the method and user name given, never what was typed), too_many_attempts (an SSH client offered more public keys than ssh.max_auth_attempts on one connection and was disconnected: once per connection, after the auth.failure of each key, with the user name given and the limit). All of these name the client address and are budgeted per source (auth.failure.summary beyond).' },
  'auth.oidc.success': { description: 'A user signed in with the OpenID Provider (vigil login): IdP subject and groups, the roles they map to, the flow (code or device: the serial of the certificates issued for keys generated on the user\'s machine; console: the web console, no certificate).' },
  'auth.oidc.failure': { description: 'A sign-in with the OpenID Provider was refused: reason (wrong_audience, expired, bad_signature, nonce_mismatch, nonce_replayed, unmapped_group, state_mismatch, login_unknown, idp_error, …), the IdP subject and groups when the token could be read.' },
  'auth.failure.summary': { description: 'Unauthenticated refusals from one source beyond its budget (budgets section), counted instead of written one by one: count, reasons, first/last time, per protocol and window.' },
  'session.start': { description: 'A proxied session to a target began.' },
  'session.end': { description: 'A proxied session ended; details carry the reason, byte counts and duration.' },
  'session.kill': { description: 'An administrator killed a live session (vigil sessions kill, POST /v1/sessions/:id/kill): details carry the session id, its user, target and protocol, and the reason given; the client was told "terminated by <actor>: <reason>" the protocol\'s way and session.end follows with reason terminated. Outcome failure: the caller is no administrator (auditors and approvers included; nothing was done).' },
  'session.watch_started': { description: 'An administrator or auditor began watching a live session read-only (vigil watch, GET /v1/sessions/:id/watch): details carry the session id, its user, target and protocol, and from (start or now). Outcome failure: the caller lacked the role, or the session is not live.' },
  'session.watch_ended': { description: 'A watcher stopped watching a live session (closed, or the session ended): details carry the session id, why, and how long and how many bytes were streamed.' },
  // ssh
  'ssh.exec.start': { description: 'An SSH exec request was passed to the target (exact command, before any output); ssh.exec follows when it ends.' },
  'ssh.exec': { description: 'A command was executed over SSH exec (exact command and exit status; outcome unknown when the session ended first).' },
  'ssh.command.start': { description: 'Strict durability only: a line is about to be submitted to a pty shell (written before its Enter is forwarded): command when the keystrokes rebuild it exactly, keys (raw keystrokes) when not, hidden: true without text at a password prompt, with echo off or typed ahead; ssh.command follows with the line as the shell showed it.' },
  'ssh.command': { description: 'A shell command: reconstructed from the terminal at Enter (source: terminal; echo: false when typed with echo off), or a complete command of a script a shell without a terminal reads from stdin (source: stdin). Outcome failure with refused_by (the guardrail) for a pty line a guardrail refused: its Enter never reached the shell. Outcome unknown with unconfirmed: true for a pty line whose Enter was forwarded but whose echo had not come back when the channel closed (command rebuilt from the keys, or hidden: true without text when it may have answered a password prompt).' },
  'ssh.sftp': { description: 'One SFTP operation (open, close, remove, rename, mkdir, rmdir, setstat, symlink) with paths.' },
  'ssh.sftp.start': { description: 'With audit.durability strict only: a file-changing SFTP request (open for writing, remove, rename, mkdir, rmdir, setstat, symlink, hardlink, copy) written durably before it is forwarded; ssh.sftp follows with the result.' },
  'ssh.sftp.undecodable': { description: 'An SFTP channel carried something vigil could not decode (unsupported version, unknown packet type or extension, length or trailing-byte mismatch, packet out of phase): the offending bytes were not forwarded and the channel was closed.' },
  'ssh.scp.undecodable': { description: 'A legacy scp (-O) channel carried a stream vigil could not follow (malformed directive, size or reply): the offending bytes were not forwarded and the channel was closed.' },
  'ssh.scp': { description: 'One legacy scp (-O) file or directory transfer, with direction, path, destination (uploads: the scp -t target), size, bytes and outcome.' },
  'ssh.forward': { description: 'A port forward (direct-tcpip) to a destination: recorded as it opens (details.state open, before the target is asked to connect; durable first in strict mode) and as it ends (state closed, with bytes each way); a refusal (outcome failure) names the rule that refused it.' },
  'ssh.request': { description: 'A channel request refused by policy (agent or X11 forwarding, remote forwarding, env, a signal with no process to reach; outcome failure), or a signal sent to the target\'s process (details.request signal, outcome success; recorded before it is sent).' },
  // recordings
  'recording.closed': { description: 'A session recording file was closed (an SSH channel ended): details carry the recording id, channel, and the SHA-256 and size in bytes of exactly what the file holds, so a recording kept on local disk can be checked against the log (vigil replay, evidence bundles) like one in object storage. Outcome failure when the recording failed (disk full, write error; details.error): the hash is then of what reached the disk.' },
  // recordings in object storage (recording.storage kind s3)
  'recording.stored': { description: 'A session recording was uploaded to object storage and completed: details carry the recording id, channel, bucket, key, bytes, the SHA-256 of the whole object (evidence exports point to it), the number of parts and how many requests failed on the way; local_removed tells whether the local copy was then removed (recording.storage.keep_local); salvaged: true when a replica completed the upload of another that was lost mid-recording (recording.storage.salvage_after), from the parts and pending objects that had reached storage (the recording up to that replica\'s last flush).' },
  'recording.upload_failed': { description: 'Uploading a session recording to object storage failed recording.storage.retry.attempts times in a row (server unreachable, refused, credentials rejected), or the gateway stopped before the upload completed (error code GatewayStopped; the next start resumes it): details carry the recording id, bucket, key, phase (session: while it was recorded; complete: at its end; salvage: completing a lost replica\'s upload, whose parts the server no longer has), the error code and message (never credentials) and local_path, where the recording is kept meanwhile. The session is not affected; uploading goes on in the background and recording.stored follows once it succeeds.' },
  // databases
  'db.query.start': { description: 'A database statement forwarded to the target is still running after audit.long_running_after, or (audit.durability strict) is about to be forwarded; db.query follows when it ends.' },
  'db.query': { description: 'A database statement with parameters (secrets masked), duration, outcome and row counts (outcome unknown when the session ended while it ran).' },
  'db.session_query': { description: 'A query vigil itself ran on a database session to learn its state (MySQL: session tracking set-up, current database and sql_mode; Postgres: current_user after a possible role change); its answer never reaches the client.' },
  'db.cancel': { description: 'A query cancellation (CancelRequest or KILL QUERY) was forwarded or refused.' },
  'db.user.provisioned': { description: 'user_provisioning: the engineer\'s own backend account was created or unlocked and given a fresh per-session password (never recorded) for this session; details: account, created, sessions using it.' },
  'db.user.granted': { description: 'user_provisioning: the backend account holds exactly the database roles its session\'s vigil roles map to (roles_map); details: account, roles, newly_granted, vigil_roles.' },
  'db.user.revoked': { description: 'user_provisioning: database roles were revoked from a backend account (no longer mapped, or the account was locked); details: account, roles, reason.' },
  'db.user.locked': { description: 'user_provisioning: a backend account was locked (NOLOGIN / ACCOUNT LOCK) after its last session, or on revocation, lock or expiry, and its backend connections killed; locked: false when only the cut session\'s connection was killed because other sessions still use the account.' },
  'db.user.provisioning_failed': { description: 'user_provisioning: preparing (step open; the session is refused) or locking (step lock) a backend account failed; details: account, step, error.' },
  // just-in-time access
  // retention
  'hold.added': { description: 'A legal hold was placed: matching events and recordings are kept whatever the retention says.' },
  'hold.released': { description: 'A legal hold was released, with a reason.' },
  'audit.purged': { description: 'Audit segments past their retention were purged: segments, seq range, time range, reason (and recordings removed, locally and in object storage).' },
  'access.requested': { description: 'A user requested elevated access with a reason.' },
  'access.approved': { description: 'An approver approved a request (or an on-call user used break-glass).' },
  'access.approval': { description: 'One approver approved a request that needs more approvals; no grant yet.' },
  'access.denied': { description: 'An approver denied a request.' },
  'access.refused': { description: 'An access lifecycle action was refused (self-approval, non-approver, double decision, expired).' },
  'access.revoked': { description: 'An active grant was revoked; live sessions under it are cut.' },
  'access.expired': { description: 'A grant reached its expiry time.' },
  'access.request_expired': { description: 'A pending request was never decided within its window and can no longer be approved.' },
  'access.notified': { description: 'A pending request was sent to the approvers\' notifiers (access.approvals.notify) with one-time approve/deny links: request, requester, beneficiary, role, notifiers, link ids (never the links) and their expiry.' },
  'access.reminded': { description: 'Nobody decided a request within access.approvals.remind_after: a reminder with fresh one-time links was sent to the notifiers.' },
  'access.escalated': { description: 'Nobody decided a request within access.approvals.escalate_after: it was sent with fresh one-time links to access.approvals.escalate_to.' },
  'access.progress_notified': { description: 'A request needing several approvals got one and still waits: the notifiers were sent who approved so far with fresh one-time links (the used approve link is gone).' },
  'access.decision_notified': { description: 'How a request that approvers were told about ended (approved, denied or expired undecided) was posted back to its notifiers.' },
  'access.link_used': { description: 'An approver decided a request through a one-time link, identified by the client certificate presented with it: link id, decision, request.' },
  'access.link_refused': { description: 'A one-time approval link was refused (no or invalid client certificate, not an approver, requester or beneficiary, used, expired or unknown) with a stable code; a refusal for the caller\'s identity leaves the link usable.' },
  'lock.created': { description: 'A user was locked out; live sessions are cut and new ones refused.' },
  'lock.deleted': { description: 'A lock was removed.' },
  'console.signin': { description: 'Someone signed in to the web console (details: method cert or oidc, console session id, roles); a refused sign-in has outcome failure and the reason.' },
  'console.signout': { description: 'A web console session ended: signed out (outcome success), or ended by the gateway at a request it then refused (outcome failure; details.reason cert_revoked, cert_expired, grant_ended — the grant a grant certificate was issued for was revoked or ran out —, user_locked or roles_unmapped — role_map no longer gives the OIDC groups a role — and the refused request).' },
  'console.view': { description: 'A web console user viewed audit material: a session (details.view session), its recording (recording, with the byte range served) or an event search/export (events, with the filter and format).' },
  'api.request': { description: 'An API call that changed state or was refused, with the caller.' },
  // audit log itself
  'audit.checkpoint': { description: 'A signed checkpoint over the hash chain head.' },
  'audit.started': { description: 'The audit log writer opened (gateway or CLI process start).' },
  'audit.outage': { description: 'The audit log could not be written for a while (e.g. disk full) and recovered without a restart: start, end, reason, the number of events refused meanwhile (their sessions were ended) and of sessions refused at admission (sessions_refused; they never reached a backend). Records of what already happened (queries, commands, file operations, session ends) refused during the outage follow it, marked recorded_after_outage (events_recorded_late, session_ends_recorded_late); refused decisions are not in the log.' },
  'audit.stopped': { description: 'The audit log writer was sealed at shutdown.' },
  'report.generated': { description: 'An access-review report was generated (vigil report access, or a reports.schedules entry): period, format, destination, SHA-256 of the file, headline counts and the chain verification status (records_left_out: records of the period left out because their bytes do not match their hash).' },
  'audit.export': { description: 'Audit events were exported (vigil audit export): format, filter, destination and how many events (left_out: records left out because their bytes do not match their hash, or the shared index left out).' },
  'audit.bundle': { description: 'A signed evidence bundle was made (vigil audit bundle): filter, time range, covered seq interval, counts, destination and the SHA-256 of its signed manifest (or the error); the replica whose chain it covers, whether the state store was shared, and the signing key\'s full fingerprint.' },
  // guardrails
  'guardrail.blocked': { description: 'A statement or SSH command was refused by a guardrail (guardrails section) before it reached the target: details carry the rule, decision (block or require_approval), reason, the statement (secrets masked) or command, and the protocol; source: terminal for a pty shell line.' },
  'guardrail.unparsed': { description: 'A statement or SSH command was refused because vigil could not parse it (or it holds dynamic SQL) and a guardrail applying to the session refuses what it cannot check (on_unparsable: refuse): details as guardrail.blocked, with the parser\'s reason.' },
  // alerts
  'alert.fired': { description: 'An alert rule (alerts section) matched: details carry the rule, its group key, the count in its window and the ids of the triggering events; the firing is queued to the rule\'s notifiers.' },
  'alert.resolved': { description: 'A rule and group that fired had no matching event for a whole window: details carry the rule, group and the time of the last matching event; notifiers are told (PagerDuty resolve with the same dedup key).' },
  'gateway.started': { description: 'The gateway started listening.' },
  'gateway.stopped': { description: 'The gateway stopped.' },
  'config.reloaded': { description: 'The configuration file was re-read and applied (SIGHUP or `vigil config reload`): SHA-256 digests of the old and new effective config, targets/roles/alerts added, removed and changed, settings kept until a restart (listeners moved, audit, …), and live sessions cut with reason config_reload because their role or target no longer allows them. Never secret values.' },
  'config.reload_failed': { description: 'A config reload was refused (invalid file, or no config file): the running configuration stays; details name the key path that is wrong and why.' },
} as const satisfies Record<string, EventTypeInfo>;

export type EventType = keyof typeof EVENT_CATALOG;

export function isEventType(t: string): t is EventType {
  return Object.prototype.hasOwnProperty.call(EVENT_CATALOG, t);
}
