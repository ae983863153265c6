import fs from 'node:fs';
import path from 'node:path';
import type { Command, CommandArgs } from '../command.ts';
import { UsageError, requireOpt, stringOpt } from '../command.ts';
import { loadFromArgs, localUser, openLocal, type LocalContext } from '../context.ts';
import { parseDuration } from '../../config/units.ts';
import { VigilError } from '../../errors.ts';
import { CA_FILES, caDir } from '../../identity/index.ts';
import { loadPreviousCas, writeAtomic } from '../../identity/ca.ts';
import { normalizeSerial } from '../../identity/x509.ts';
import { buildPkcs12, pkcs8Der } from '../../identity/pkcs12.ts';

/**
 * `vigil cert issue`, `vigil cert revoke`, `vigil ca show`: issuance and revocation on the local data
 * directory. Every issuance (and every refused one) and every revocation is an audit event.
 */

function splitList(s: string | undefined): string[] {
  return (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);
}

/** permit-pty always; permit-port-forwarding only when a configured role of the user allows it. */
export function extensionsForRoles(config: LocalContext['config'], roles: string[]): string[] {
  const forwarding = config.roles.some((r) => roles.includes(r.name) && r.port_forwarding);
  return forwarding ? ['permit-pty', 'permit-port-forwarding'] : ['permit-pty'];
}

function actorOf(args: CommandArgs) {
  return { user: stringOpt(args.values, 'by') ?? localUser(), roles: [] as string[] };
}

export const certIssueCommand: Command = {
  name: 'cert issue',
  summary: 'Issue a short-lived SSH + X.509 certificate (or a token) to a user.',
  usage:
    '--user U --roles R1,R2 [--ttl 1h] [--ssh-pubkey FILE] [--grant ID] [--source-address CIDR,...] [--force-command CMD] [--token] --out DIR [--format pem,pkcs8,pkcs12] [--pkcs12-password-file FILE] [--by NAME]\n\n' +
    '  Writes DIR/U-cert.pub (OpenSSH user certificate), DIR/U.crt + DIR/U.key (X.509 client certificate, key 0600) and\n' +
    '  DIR/ca.crt; without --ssh-pubkey also a new Ed25519 key pair DIR/U (0600) + DIR/U.pub. --ttl defaults to\n' +
    '  certs.default_ttl and is capped by certs.max_ttl and by the expiry of --grant. --token prints a short-lived token\n' +
    '  (the password for tools without client-certificate support); with --out the files are written as well.\n' +
    '  --format adds key formats for Java clients (pgjdbc, Connector/J): pkcs8 writes DIR/U.pk8 (DER PKCS#8, unencrypted,\n' +
    '  0600); pkcs12 writes DIR/U.p12 (certificate + key under the alias "user", as pgjdbc expects; 0600) protected by\n' +
    '  the first line of --pkcs12-password-file, or by the empty password when none is given (pgjdbc: sslpassword=).\n' +
    '  PEM files are always written.',
  options: {
    user: { type: 'string', arg: 'U', help: 'the user the certificate is for (required)' },
    roles: { type: 'string', arg: 'R1,R2', help: 'roles written into the certificate (required)' },
    ttl: { type: 'string', arg: '1h', help: 'lifetime (default certs.default_ttl, capped by certs.max_ttl and --grant)' },
    'ssh-pubkey': { type: 'string', arg: 'FILE', help: 'certify this public key instead of generating a key pair' },
    grant: { type: 'string', arg: 'ID', help: 'bind the certificate to this grant: it ends when the grant does' },
    'source-address': { type: 'string', arg: 'CIDR,…', help: 'only usable from these addresses (SSH and X.509 certificates and tokens alike)' },
    'force-command': { type: 'string', arg: 'CMD', help: 'SSH: run only this command' },
    token: { type: 'boolean', help: 'print a short-lived token (a password for clients without certificate support)' },
    out: { type: 'string', arg: 'DIR', help: 'directory the files are written to' },
    format: { type: 'string', arg: 'pem,pkcs8,pkcs12', help: 'extra key formats for Java clients (PEM is always written)' },
    'pkcs12-password-file': { type: 'string', arg: 'FILE', help: 'its first line protects the .p12 (default: empty password)' },
    by: { type: 'string', arg: 'NAME', help: 'who issues, for the audit event (default: the OS user)' },
  },
  examples: ['cert issue --user alice --roles dba --ttl 8h --out ./alice', 'cert issue --user ci-deploy --roles deploy --ttl 15m --token'],
  async run(args) {
    const v = args.values;
    const formats = splitList(stringOpt(v, 'format'));
    for (const f of formats) if (!['pem', 'pkcs8', 'pkcs12'].includes(f)) throw new UsageError(`--format: expected pem, pkcs8 or pkcs12, got "${f}"`);
    const p12PasswordFile = stringOpt(v, 'pkcs12-password-file');
    const p12Password = p12PasswordFile === undefined ? '' : readInput(p12PasswordFile, '--pkcs12-password-file').split(/\r?\n/)[0];
    const user = requireOpt(v, 'user');
    const roles = splitList(stringOpt(v, 'roles'));
    const wantToken = v.token === true;
    const outDir = stringOpt(v, 'out');
    if (!outDir && !wantToken) throw new UsageError('--out DIR is required (or --token for a token only)');
    const ttlText = stringOpt(v, 'ttl');
    const ttlMs = ttlText === undefined ? undefined : parseDuration(ttlText);
    if (ttlText !== undefined && (ttlMs === undefined || ttlMs <= 0)) throw new UsageError(`--ttl: expected a duration like 30m or 1h, got "${ttlText}"`);
    const pubFile = stringOpt(v, 'ssh-pubkey');
    const sshPublicKey = pubFile === undefined ? undefined : readInput(pubFile, '--ssh-pubkey');
    const sourceText = stringOpt(v, 'source-address');
    const sourceAddresses = sourceText === undefined ? undefined : splitList(sourceText);
    const grantId = stringOpt(v, 'grant');

    const ctx = await openLocal(args);
    try {
      const actor = actorOf(args);
      const target = { name: `user/${user}`, protocol: 'vigil' };
      // A grant's role counts for the role-derived extensions too (issue() adds it to the certificate).
      const grantRole = grantId ? (await ctx.store.getAccess(grantId))?.role : undefined;
      const extensions = extensionsForRoles(ctx.config, grantRole ? [...roles, grantRole] : roles);
      const base = { user, roles, ttlMs, grantId };
      try {
        if (outDir) {
          const creds = await ctx.identity.issue({ ...base, sshPublicKey, sourceAddresses, forceCommand: stringOpt(v, 'force-command'), extensions });
          const dir = path.resolve(outDir);
          fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
          const files: string[] = [];
          const put = (name: string, content: string, mode: number) => {
            const p = path.join(dir, name);
            writeAtomic(p, content.endsWith('\n') ? content : content + '\n', mode);
            files.push(p);
          };
          put(`${user}-cert.pub`, creds.sshCertificate, 0o644);
          if (creds.sshPrivateKey) {
            put(user, creds.sshPrivateKey, 0o600);
            put(`${user}.pub`, creds.sshPublicKey, 0o644);
          }
          put(`${user}.crt`, creds.x509Certificate, 0o644);
          put(`${user}.key`, creds.x509PrivateKey, 0o600);
          put('ca.crt', creds.caCertificate, 0o644);
          const putBinary = (name: string, content: Buffer) => {
            const p = path.join(dir, name);
            writeAtomic(p, content, 0o600);
            files.push(p);
          };
          if (formats.includes('pkcs8')) putBinary(`${user}.pk8`, pkcs8Der(creds.x509PrivateKey));
          if (formats.includes('pkcs12')) {
            // Alias `user`: pgjdbc's PKCS#12 key manager looks the key up under that name (any Java KeyStore user can pick it).
            putBinary(`${user}.p12`, buildPkcs12({ certificatePem: creds.x509Certificate, privateKeyPem: creds.x509PrivateKey, password: p12Password, friendlyName: 'user' }));
          }
          await emitIssued(ctx, actor, target, { serial: creds.serial, user, roles: creds.roles, not_before: creds.notBefore.toISOString(), not_after: creds.notAfter.toISOString(), grant_id: creds.grantId ?? null, kind: 'cert', extensions });
          args.out.write(
            `issued certificate ${creds.serial} to ${user} (roles: ${creds.roles.join(',') || '-'})\n` +
              `  valid ${creds.notBefore.toISOString()} .. ${creds.notAfter.toISOString()}${creds.grantId ? ` (grant ${creds.grantId})` : ''}\n` +
              files.map((f) => `  ${f}\n`).join(''),
          );
        }
        if (wantToken) {
          // Bound like the certificates: a token from --source-address is refused from any other address.
          const tok = await ctx.identity.issueToken({ ...base, sourceAddresses });
          await emitIssued(ctx, actor, target, { serial: tok.serial, user, roles: rolesOf(roles, grantRole), not_before: tok.notBefore.toISOString(), not_after: tok.notAfter.toISOString(), grant_id: grantId ?? null, kind: 'token', source_addresses: sourceAddresses ?? null });
          if (outDir) args.out.write(`token ${tok.serial}, valid until ${tok.notAfter.toISOString()}:\n`);
          args.out.write(tok.token + '\n');
        }
        return 0;
      } catch (e) {
        if (!(e instanceof VigilError)) throw e;
        // A refused issuance concerns access: it is on the record, with the reason.
        await ctx.events.emit({ type: 'cert.issued', outcome: 'failure', actor, source: ctx.source, target, details: { user, roles, grant_id: grantId ?? null, kind: wantToken && !outDir ? 'token' : 'cert', error: e.code, reason: e.message } });
        throw e;
      }
    } finally {
      await ctx.close();
    }
  },
};

function rolesOf(roles: string[], grantRole: string | undefined): string[] {
  return grantRole && !roles.includes(grantRole) ? [...roles, grantRole] : roles;
}

async function emitIssued(ctx: LocalContext, actor: { user: string; roles: string[] }, target: { name: string; protocol: string }, details: Record<string, unknown>) {
  await ctx.events.emit({ type: 'cert.issued', outcome: 'success', actor, source: ctx.source, target, details });
}

function readInput(file: string, flag: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(e as Error).message}`);
  }
}

export const certRevokeCommand: Command = {
  name: 'cert revoke',
  summary: 'Revoke a certificate or token by serial; live sessions using it are cut.',
  usage: 'SERIAL --reason TEXT [--by NAME]   (SERIAL as printed at issuance, or the decimal serial ssh-keygen -L shows)',
  positionals: true,
  options: {
    reason: { type: 'string', arg: 'TEXT', help: 'why (required; recorded)' },
    by: { type: 'string', arg: 'NAME', help: 'who revokes, for the audit event (default: the OS user)' },
  },
  examples: ['cert revoke 7f3a9c21 --reason "key left on a shared host"'],
  async run(args) {
    if (args.positionals.length !== 1) throw new UsageError('expected exactly one SERIAL');
    const reason = requireOpt(args.values, 'reason');
    const ctx = await openLocal(args);
    try {
      const serial = await resolveSerial(ctx, args.positionals[0]);
      const actor = actorOf(args);
      const issued = await ctx.store.getIssuedCert(serial);
      const target = { name: `cert/${serial}`, protocol: 'vigil' };
      const details = { serial, reason, user: issued?.user ?? null, kind: issued?.kind ?? null, known: issued !== undefined };
      const added = await ctx.store.revoke({ serial, reason, by: actor.user, time: new Date().toISOString() });
      if (!added) {
        await ctx.events.emit({ type: 'cert.revoked', outcome: 'failure', actor, source: ctx.source, target, details: { ...details, error: 'already revoked' } });
        args.err.write(`serial ${serial} was already revoked\n`);
        return 1;
      }
      await ctx.events.emit({ type: 'cert.revoked', outcome: 'success', actor, source: ctx.source, target, details });
      args.out.write(`revoked ${serial}${issued ? ` (${issued.kind} of ${issued.user})` : ' (not issued by this data directory; added to the revocation list anyway)'}\n`);
      return 0;
    } finally {
      await ctx.close();
    }
  },
};

/** Accepts the hex serial vigil prints, or the decimal one ssh-keygen -L prints; prefers the one that was issued. */
async function resolveSerial(ctx: LocalContext, input: string): Promise<string> {
  const s = input.trim().toLowerCase().replace(/^0x/, '');
  const candidates: string[] = [];
  if (/^[0-9a-f]{1,16}$/.test(s)) candidates.push(normalizeSerial(s));
  if (/^\d{1,20}$/.test(s) && BigInt(s) < 1n << 64n) candidates.push(BigInt(s).toString(16).padStart(16, '0'));
  if (candidates.length === 0) throw new UsageError(`"${input}" is not a certificate serial (16 hex digits, or the decimal serial ssh-keygen shows)`);
  for (const c of candidates) if (await ctx.store.getIssuedCert(c)) return c;
  return candidates[0];
}

export const caShowCommand: Command = {
  name: 'ca show',
  summary: 'Print the CA public keys and the lines clients and servers need to trust them.',
  usage: '[--data DIR]',
  examples: ['ca show --data /var/lib/vigil'],
  async run(args) {
    const loaded = loadFromArgs(args);
    const dir = caDir(loaded.dataDir);
    const read = (f: string) => {
      try {
        return fs.readFileSync(path.join(dir, f), 'utf8').trim();
      } catch {
        throw new VigilError('VIGIL_CA_MISSING', `no CA in ${dir}; run \`vigil init\` first`);
      }
    };
    // After `vigil ca rotate`, previous user CAs stay trusted until their last certificate expires.
    const userCa = [read(`${CA_FILES.userCa}.pub`), ...loadPreviousCas(loaded.dataDir).map((p) => `${p.userCaPubLine}   # previous, trusted until ${p.retireAfter.toISOString()}`)].join('\n  ');
    const hostCa = read(`${CA_FILES.hostCa}.pub`);
    read(CA_FILES.x509CaCert);
    args.out.write(
      `SSH user CA (TrustedUserCAKeys on backends that should accept vigil certificates directly):\n  ${userCa}\n\n` +
        `SSH host CA — add to ~/.ssh/known_hosts so ssh trusts the gateway and jump-host targets:\n  @cert-authority * ${hostCa}\n\n` +
        `X.509 root for psql/mysql (sslrootcert) and API clients:\n  ${path.join(dir, CA_FILES.x509CaCert)}\n`,
    );
    return 0;
  },
};

export const CERT_COMMANDS: Command[] = [certIssueCommand, certRevokeCommand, caShowCommand];
