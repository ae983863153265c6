import fs from 'node:fs';
import path from 'node:path';
import type { Command, CommandArgs, OptionSpec } from '../command.ts';
import { writeAtomic } from '../../identity/ca.ts';
import { UsageError, requireOpt, stringOpt } from '../command.ts';
import { localUser, openLocal } from '../context.ts';
import { parseDuration } from '../../config/units.ts';
import { AccessService, formatDuration, type Actor } from '../../access/service.ts';
import { requestTimeoutMs, TIMEOUT_OPTION } from '../gateway-request.ts';
import { apiAccessClient, localAccessClient, type AccessClient } from '../../access/client.ts';
import type { AccessRecord, AccessState, LockRecord } from '../../store/types.ts';
import { escapeTerminal } from '../../../recorder/audit/index.ts';

/**
 * `vigil access …`, `vigil lock user`, `vigil unlock user`. With `--api URL --cert --key --ca` (or
 * VIGIL_API/VIGIL_CERT/VIGIL_KEY/VIGIL_CA) the command goes through a running gateway's API and acts as
 * the certificate's user. Without, it acts on the local data dir as `--by NAME` (default: the OS user),
 * holding `--by-roles` or the roles `access.local_roles` gives that name. Local data-dir access is
 * admin-equivalent (it can rewrite the state database), so locks and revocations are allowed there; the
 * four-eyes rules still apply, and every event records the local origin (`cli:osuser@host`).
 */

const API_OPTIONS: Record<string, OptionSpec> = {
  api: { type: 'string', arg: 'URL', help: 'go through a running gateway\'s API (default: $VIGIL_API; without it, act on the local data dir)' },
  cert: { type: 'string', arg: 'FILE', help: 'client certificate for --api, you act as its user (default: $VIGIL_CERT)' },
  key: { type: 'string', arg: 'FILE', help: 'private key of --cert (default: $VIGIL_KEY)' },
  ca: { type: 'string', arg: 'FILE', help: 'CA certificate the API server is checked against (default: $VIGIL_CA)' },
  by: { type: 'string', arg: 'NAME', help: 'local data dir only: act as this user (default: the OS user)' },
  'by-roles': { type: 'string', arg: 'R1,R2', help: 'local data dir only: roles of --by (default: access.local_roles of that name)' },
  ...TIMEOUT_OPTION,
  json: { type: 'boolean' },
};
const API_USAGE = '[--by NAME [--by-roles R1,R2]] [--api URL --cert F --key F --ca F] [--json]';

/** Run `fn` with a client for the chosen path (API or local), closing what was opened. */
async function withClient<T>(args: CommandArgs, fn: (c: AccessClient) => Promise<T>, defaultActor?: string, opts: { readOnly?: boolean } = {}): Promise<T> {
  const v = args.values;
  const url = stringOpt(v, 'api') ?? process.env.VIGIL_API;
  if (url) {
    const file = (flag: string, env: string) => {
      const f = stringOpt(v, flag) ?? process.env[env];
      if (!f) throw new UsageError(`--${flag} (or ${env}) is required with --api`);
      return f;
    };
    if (stringOpt(v, 'by') || stringOpt(v, 'by-roles')) {
      throw new UsageError('--by/--by-roles apply to the local data dir only; over the API you act as your client certificate');
    }
    return fn(apiAccessClient({ url, urlOption: stringOpt(v, 'api') ? '--api' : 'VIGIL_API', certFile: file('cert', 'VIGIL_CERT'), keyFile: file('key', 'VIGIL_KEY'), caFile: file('ca', 'VIGIL_CA'), timeoutMs: requestTimeoutMs(v) }));
  }
  const ctx = await openLocal(args, opts);
  try {
    const name = stringOpt(v, 'by') ?? defaultActor ?? localUser();
    const flagRoles = stringOpt(v, 'by-roles');
    const roles = flagRoles !== undefined ? splitList(flagRoles) : (ctx.config.access.local_roles[name] ?? []);
    const actor: Actor = { user: name, roles, source: ctx.source, local: true };
    const access = new AccessService({ config: ctx.config, store: ctx.store, events: ctx.events, identity: ctx.identity });
    return await fn(localAccessClient(access, actor, () => access.expireDue(ctx.source)));
  } finally {
    await ctx.close();
  }
}

function splitList(s: string): string[] {
  return s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

function ttlOpt(v: CommandArgs['values'], key: string): number | undefined {
  const s = stringOpt(v, key);
  if (s === undefined) return undefined;
  const ms = parseDuration(s);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${key}: expected a duration like 30m or 1h, got "${s}"`);
  return ms;
}

function onePositional(args: CommandArgs, what: string): string {
  if (args.positionals.length !== 1) throw new UsageError(`expected exactly one ${what}`);
  return args.positionals[0];
}

/** A request's state as people read it: a pending request past its decision window says so. */
function displayState(r: AccessRecord): string {
  if (r.state === 'pending' && Date.parse(r.requestExpiresAt) <= Date.now()) return 'pending (request expired)';
  return r.breakGlass && r.state === 'active' ? 'active (break-glass)' : r.state;
}

function summary(r: AccessRecord): string {
  const targets = r.targets.length ? ` on ${r.targets.join(',')}` : '';
  const when =
    r.state === 'pending'
      ? `for ${formatDuration(r.ttlMs)} once approved`
      : r.state === 'active'
        ? `until ${r.expiresAt}`
        : r.state === 'expired'
          ? `expired ${r.expiresAt}`
          : `by ${r.decidedBy}`;
  const filer = r.requester && r.requester !== r.user ? ` (filed by ${r.requester})` : '';
  // Escaped: the approver reads what the requester typed; a line break or control in it must not forge a record line.
  return escapeTerminal(`${r.id}  ${displayState(r)}  ${r.user}${filer} → ${r.role}${targets}  ${when}`.trimEnd());
}

function details(r: AccessRecord): string {
  const lines = [
    `id:          ${r.id}`,
    `state:       ${displayState(r)}`,
    `user:        ${r.user}`,
    `requested by: ${r.requester ?? r.user}`,
    `role:        ${r.role}`,
    `targets:     ${r.targets.length ? r.targets.join(', ') : '(all the role reaches)'}`,
    `reason:      ${r.reason}`,
    `duration:    ${formatDuration(r.ttlMs)}`,
    `requested:   ${r.createdAt}`,
    `decide by:   ${r.requestExpiresAt}`,
    `approvals:   ${r.approvals.length ? r.approvals.map((a) => `${a.by} at ${a.time}${a.comment ? ` ("${a.comment}")` : ''}`).join('; ') : '(none)'}`,
  ];
  if (r.breakGlass) lines.push('break-glass: yes');
  if (r.grantedAt) lines.push(`granted:     ${r.grantedAt}`);
  if (r.expiresAt) lines.push(`expires:     ${r.expiresAt}`);
  if (r.decidedBy) lines.push(`decided by:  ${r.decidedBy}`);
  if (r.decisionReason) lines.push(`why:         ${r.decisionReason}`);
  return lines.map(escapeTerminal).join('\n');
}

function printRecord(args: CommandArgs, r: AccessRecord, verb?: string): void {
  if (args.values.json) args.out.write(JSON.stringify(r) + '\n');
  else args.out.write(`${verb ? `${verb}: ` : ''}${summary(r)}\n`);
}

function printLock(args: CommandArgs, l: LockRecord, verb: string): void {
  if (args.values.json) args.out.write(JSON.stringify(l) + '\n');
  else args.out.write(`${verb}: ${escapeTerminal(`user ${l.name} (by ${l.by}: ${l.reason}${l.expiresAt ? `, until ${l.expiresAt}` : ''})`)}\n`);
}

const STATES: AccessState[] = ['pending', 'active', 'denied', 'expired', 'revoked'];

export const accessRequestCommand: Command = {
  name: 'access request',
  summary: 'Request elevated access to a role (a reason is mandatory); --break-glass self-grants when on call.',
  usage: `--role ROLE --reason TEXT [--user NAME] [--target T]... [--ttl 30m] [--break-glass] ${API_USAGE}`,
  options: {
    ...API_OPTIONS,
    user: { type: 'string', arg: 'NAME', help: 'request for this user (default: yourself)' },
    role: { type: 'string', arg: 'ROLE', help: 'the role wanted (required)' },
    target: { type: 'string', arg: 'T', multiple: true, help: 'limit the grant to these targets of the role' },
    reason: { type: 'string', arg: 'TEXT', help: 'why, e.g. a ticket (required; recorded)' },
    ttl: { type: 'string', arg: '30m', help: 'how long the grant lasts once approved (capped by the role)' },
    'break-glass': { type: 'boolean', help: 'grant yourself now without approval (on-call roles only; flagged for review)' },
  },
  examples: ['access request --role dba --reason "INC-4211 fix replication" --ttl 1h', 'access request --role prod-ssh --reason "pager" --break-glass'],
  async run(args) {
    const v = args.values;
    const role = requireOpt(v, 'role');
    const reason = stringOpt(v, 'reason');
    if (!reason) throw new UsageError('--reason is required: say why you need the access (e.g. an incident id)');
    const targets = ((v.target as string[] | undefined) ?? []).flatMap(splitList);
    const user = stringOpt(v, 'user');
    const rec = await withClient(
      args,
      (c) => c.request({ user, role, targets, reason, ttlMs: ttlOpt(v, 'ttl'), breakGlass: v['break-glass'] === true }),
      user,
    );
    printRecord(args, rec, rec.breakGlass ? 'break-glass grant' : 'requested');
    return 0;
  },
};

export const accessApproveCommand: Command = {
  name: 'access approve',
  summary: 'Approve a pending access request (not your own; you must hold an approver role of its role).',
  usage: `ID [--comment TEXT] ${API_USAGE}`,
  positionals: true,
  options: { ...API_OPTIONS, comment: { type: 'string', arg: 'TEXT', help: 'a note recorded with the approval' } },
  examples: ['access approve 01HV3Z8K2Q --comment "ok, watch the lag"'],
  async run(args) {
    const id = onePositional(args, 'request id');
    const rec = await withClient(args, (c) => c.approve(id, { comment: stringOpt(args.values, 'comment') }));
    printRecord(args, rec, rec.state === 'active' ? 'approved' : `approval recorded (${rec.approvals.length} so far)`);
    return 0;
  },
};

/** `vigil access deny|revoke ID --reason TEXT`: one id, a mandatory reason, one client call. */
function withReasonCommand(
  name: string,
  summary: string,
  what: string,
  verb: string,
  act: (c: AccessClient, id: string, reason: string) => Promise<AccessRecord>,
): Command {
  return {
    name,
    summary,
    usage: `ID --reason TEXT ${API_USAGE}`,
    positionals: true,
    options: { ...API_OPTIONS, reason: { type: 'string', arg: 'TEXT', help: 'why (required; recorded)' } },
    examples: [`${name} 01HV3Z8K2Q --reason "not needed for this ticket"`],
    async run(args) {
      const id = onePositional(args, what);
      const reason = requireOpt(args.values, 'reason');
      printRecord(args, await withClient(args, (c) => act(c, id, reason)), verb);
      return 0;
    },
  };
}

export const accessDenyCommand = withReasonCommand('access deny', 'Deny a pending access request with a reason.', 'request id', 'denied', (c, id, reason) =>
  c.deny(id, { reason }),
);

export const accessRevokeCommand = withReasonCommand(
  'access revoke',
  'Revoke an active grant now; live sessions under it are cut within a second.',
  'grant id',
  'revoked',
  (c, id, reason) => c.revoke(id, { reason }),
);

export const accessListCommand: Command = {
  name: 'access list',
  summary: 'List access requests and grants.',
  usage: `[--state ${STATES.join('|')}] [--user NAME] ${API_USAGE}`,
  options: {
    ...API_OPTIONS,
    state: { type: 'string', arg: 'STATE', help: `only requests/grants in this state (${STATES.join(', ')})` },
    user: { type: 'string', arg: 'NAME', help: 'only those of this user' },
  },
  examples: ['access list --state pending', 'access list --user alice --json'],
  async run(args) {
    const state = stringOpt(args.values, 'state');
    if (state !== undefined && !STATES.includes(state as AccessState)) throw new UsageError(`--state: expected one of ${STATES.join(', ')}`);
    const recs = await withClient(args, (c) => c.list({ state: state as AccessState | undefined, user: stringOpt(args.values, 'user') }), undefined, { readOnly: true });
    if (args.values.json) {
      // One record per line, as every --json listing: scripts read it line by line (jq -c, while read).
      for (const r of recs) args.out.write(JSON.stringify(r) + '\n');
    } else if (recs.length === 0) {
      args.out.write('no access requests\n');
    } else {
      for (const r of recs) args.out.write(`${summary(r)}\n    reason: ${escapeTerminal(r.reason)}\n`);
    }
    return 0;
  },
};

export const accessShowCommand: Command = {
  name: 'access show',
  summary: 'Show one access request or grant.',
  usage: `ID ${API_USAGE}`,
  positionals: true,
  options: API_OPTIONS,
  examples: ['access show 01HV3Z8K2Q --json'],
  async run(args) {
    const id = onePositional(args, 'request id');
    const rec = await withClient(args, (c) => c.show(id), undefined, { readOnly: true });
    args.out.write(args.values.json ? JSON.stringify(rec) + '\n' : details(rec) + '\n');
    return 0;
  },
};

export const accessCertCommand: Command = {
  name: 'access cert',
  summary: 'Get certificates bound to one of your active grants (they end with the grant).',
  usage: `ID --out DIR [--ssh-pubkey FILE] [--ttl 30m] ${API_USAGE}`,
  positionals: true,
  options: {
    ...API_OPTIONS,
    out: { type: 'string', arg: 'DIR', help: 'directory the certificates and keys are written to (required)' },
    'ssh-pubkey': { type: 'string', arg: 'FILE', help: 'certify this public key instead of generating a key pair' },
    ttl: { type: 'string', arg: '30m', help: 'certificate lifetime (never past the grant\'s end)' },
  },
  examples: ['access cert 01HV3Z8K2Q --out ~/.vigil --ssh-pubkey ~/.ssh/id_ed25519.pub'],
  async run(args) {
    const id = onePositional(args, 'grant id');
    const outDir = path.resolve(requireOpt(args.values, 'out'));
    const pubFile = stringOpt(args.values, 'ssh-pubkey');
    let sshPublicKey: string | undefined;
    try {
      sshPublicKey = pubFile === undefined ? undefined : fs.readFileSync(pubFile, 'utf8');
    } catch (e) {
      throw new UsageError(`--ssh-pubkey: cannot read ${pubFile}: ${(e as Error).message}`);
    }
    const c = await withClient(args, (cl) => cl.certificate(id, { sshPublicKey, ttlMs: ttlOpt(args.values, 'ttl') }));
    fs.mkdirSync(outDir, { recursive: true, mode: 0o700 });
    const files: string[] = [];
    const put = (name: string, content: string | undefined, mode: number) => {
      if (content === undefined) return;
      const p = path.join(outDir, name);
      writeAtomic(p, content.endsWith('\n') ? content : content + '\n', mode);
      files.push(p);
    };
    put(`${c.user}-cert.pub`, c.ssh_certificate, 0o644);
    put(c.user, c.ssh_private_key, 0o600);
    if (c.ssh_private_key) put(`${c.user}.pub`, c.ssh_public_key, 0o644);
    put(`${c.user}.crt`, c.x509_certificate, 0o644);
    put(`${c.user}.key`, c.x509_private_key, 0o600);
    put('ca.crt', c.ca_certificate, 0o644);
    if (args.values.json) args.out.write(JSON.stringify({ serial: c.serial, grant_id: c.grant_id, not_after: c.not_after, files }) + '\n');
    else args.out.write(`issued certificate ${c.serial} for grant ${c.grant_id}, valid until ${c.not_after}\n${files.map((f) => `  ${f}\n`).join('')}`);
    return 0;
  },
};

export const lockUserCommand: Command = {
  name: 'lock user',
  summary: 'Lock a user out: new connections are refused and live sessions cut within a second.',
  usage: `NAME --reason TEXT [--ttl 8h] ${API_USAGE}`,
  positionals: true,
  options: {
    ...API_OPTIONS,
    reason: { type: 'string', arg: 'TEXT', help: 'why (required; recorded)' },
    ttl: { type: 'string', arg: '8h', help: 'lift the lock automatically after this long (default: until unlocked)' },
  },
  examples: ['lock user mallory --reason "laptop stolen" --ttl 24h'],
  async run(args) {
    const user = onePositional(args, 'user name');
    const reason = requireOpt(args.values, 'reason');
    printLock(args, await withClient(args, (c) => c.lock({ user, reason, ttlMs: ttlOpt(args.values, 'ttl') })), 'locked');
    return 0;
  },
};

export const unlockUserCommand: Command = {
  name: 'unlock user',
  summary: 'Remove the lock on a user.',
  usage: `NAME ${API_USAGE}`,
  positionals: true,
  options: API_OPTIONS,
  examples: ['unlock user mallory'],
  async run(args) {
    const user = onePositional(args, 'user name');
    await withClient(args, (c) => c.unlock(user));
    args.out.write(args.values.json ? JSON.stringify({ unlocked: user }) + '\n' : `unlocked: user ${user}\n`);
    return 0;
  },
};

export const lockListCommand: Command = {
  name: 'lock list',
  summary: 'List locked users.',
  usage: API_USAGE,
  options: API_OPTIONS,
  examples: ['lock list --json'],
  async run(args) {
    const locks = await withClient(args, (c) => c.listLocks(), undefined, { readOnly: true });
    if (args.values.json) for (const l of locks) args.out.write(JSON.stringify(l) + '\n');
    else if (locks.length === 0) args.out.write('no locks\n');
    else for (const l of locks) args.out.write(`${escapeTerminal(`user ${l.name}  since ${l.createdAt}${l.expiresAt ? ` until ${l.expiresAt}` : ''}  by ${l.by}: ${l.reason}`)}\n`);
    return 0;
  },
};

export const ACCESS_COMMANDS: Command[] = [
  accessRequestCommand,
  accessApproveCommand,
  accessDenyCommand,
  accessListCommand,
  accessShowCommand,
  accessRevokeCommand,
  accessCertCommand,
  lockUserCommand,
  unlockUserCommand,
  lockListCommand,
];
