/**
 * One client connection through the MySQL proxy: greeting, mandatory TLS upgrade, vigil identity
 * (client certificate, or token via mysql_clear_password), admission, backend login, then the command
 * phase: client packets are decoded, checked and forwarded; server bytes are relayed unchanged while a
 * ResponseTracker follows them to record each command's outcome.
 */
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import type { ConnectionContext } from '../../src/gateway/proxy.ts';
import type { GatewayServices } from '../../src/gateway/services.ts';
import { admit, openSession, type AdmitRequest, type OpenSession } from '../../src/sessions/admit.ts';
import type { EndReason } from '../../src/sessions/registry.ts';
import type { AuditEvent, EventInput, Outcome } from '../../src/events/envelope.ts';
import type { VerifyResult, Principal } from '../../src/identity/types.ts';
import type { TargetConfig } from '../../src/config/schema.ts';
import { readSecret, type SecretRef } from '../../src/config/types.ts';
import { ProtocolError, VigilError } from '../../src/errors.ts';
import { PacketFramer, PacketTooLarge, encodePacket, wirePacketCount, type Packet } from './framing.ts';
import { buildAuthSwitch, buildErr, buildGreeting, buildOk, parseClientHandshake, ERR, SSL_REQUEST_LENGTH, type ErrPacket } from './handshake.ts';
import { CLIENT, COM, COMMAND_NAMES, MARIADB_CLIENT } from './wire.ts';
import { parseCommand, statementText, hasAsciiTrail, multibyteReader, ASCII_TRAIL_CHARSETS, type ParamValue, PARAMETER_COUNT_AVAILABLE } from './commands.ts';
import { PreparedStatements } from './statements.ts';
import type { CommandResponse, ResponseShape, ResultSummary } from './response.ts';
import { internalQueries, SESSION_PROBE, SESSION_SETUP } from './session-query.ts';
import { CommandTracker, type InFlight, type TrackerSink } from './tracker.ts';
import { addResult, addResults, errDetails, eventText, redactedText, round, type QueryFields } from './record.ts';
import { analyzeSql, attributeResults, tokenize, type Multibyte, type SqlAnalysis, type SqlMode, type StatementInfo, type Token } from './sql.ts';
import { BackendRefusedLogin, connectBackend, type BackendConnection } from './backend.ts';
import { mysqlAccounts } from './provisioning.ts';
import { backendAccounts, ProvisioningError, type AccountCredential } from '../../src/accounts/manager.ts';
import { accountName, type UserProvisioning } from '../../src/accounts/config.ts';
import type { ConnectionIds, KillableConnection } from './connection-ids.ts';
import type { SourceLimiter } from '../../src/gateway/preauth.ts';
import { PreAuthDeadlines, recordPreAuthProtocolError, recordPreAuthRefused, watchWriteStall } from '../../src/gateway/slow-clients.ts';
import type { ServerIdentities } from './server-identity.ts';
import type { EventType } from '../../src/events/catalog.ts';
import { refusalMessage, type MysqlStatement, type SessionGuardrails } from '../../src/guardrails/index.ts';
import { guardrailsForLogin } from '../../src/guardrails/account-self-protection.ts';

export interface MysqlSection {
  enabled: boolean;
  listen: { host: string; port: number };
  /** Overrides the version string learned from the greeting target (normally unset). */
  server_version?: string;
  /** The target whose server identity (version, capabilities, charset) vigil's greeting shows. */
  greeting_target?: string;
  max_packet: number;
  /** Offer CLIENT_QUERY_ATTRIBUTES (only useful when the targets are MySQL >= 8.0.23). */
  query_attributes: boolean;
}

export interface MysqlShared {
  services: GatewayServices;
  section: MysqlSection;
  ids: ConnectionIds;
  /** Connections that have not authenticated yet. */
  unauthenticated: { count: number };
  /** Unauthenticated connections per source address (limit: pre_auth.max_per_source). */
  perSource: SourceLimiter;
  secretName: (name: string) => boolean;
  identities: ServerIdentities;
}

/** Capabilities vigil offers clients. LOCAL_FILES and compression are never offered. */
export const SERVER_CAPABILITIES =
  CLIENT.LONG_PASSWORD | CLIENT.FOUND_ROWS | CLIENT.LONG_FLAG | CLIENT.CONNECT_WITH_DB | CLIENT.ODBC | CLIENT.IGNORE_SPACE |
  CLIENT.PROTOCOL_41 | CLIENT.INTERACTIVE | CLIENT.SSL | CLIENT.IGNORE_SIGPIPE | CLIENT.TRANSACTIONS | CLIENT.RESERVED |
  CLIENT.SECURE_CONNECTION | CLIENT.MULTI_STATEMENTS | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS | CLIENT.PLUGIN_AUTH |
  CLIENT.CONNECT_ATTRS | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.SESSION_TRACK | CLIENT.DEPRECATE_EOF;

/** Capabilities whose value changes the command-phase byte format: client and backend must agree. */
const FORMAT_CAPABILITIES = CLIENT.PROTOCOL_41 | CLIENT.DEPRECATE_EOF | CLIENT.SESSION_TRACK | CLIENT.MULTI_RESULTS | CLIENT.PS_MULTI_RESULTS;

/** MariaDB extensions vigil passes through. Extended type info only adds a field to column definitions
 *  (`json`, `uuid`, geometry subtypes), which the relay counts but does not read; without it mysql2 returns a
 *  JSON column as a string where direct it gets the parsed value (bench/peers/mysql.ts). Bulk execution,
 *  progress reports and metadata caching change the formats the tracker follows, so they are not offered. */
const OFFERED_MARIADB_CAPABILITIES: number = MARIADB_CLIENT.EXTENDED_TYPE_INFO;

const CHARSET_UTF8MB4 = 45;
/** MariaDB's statement id for "the statement prepared last" (COM_STMT_EXECUTE, SEND_LONG_DATA, ...). */
const LAST_PREPARED = 0xffffffff;
/** An assignment to the session-state tracking variables vigil sets up (SET, SET STATEMENT … FOR, in a
 *  string for PREPARE / EXECUTE IMMEDIATE): the name, then spaces, comments or a closing backtick, then
 *  `=` or `:=`. */
const TRACKING_ASSIGNMENT = /session_track_(?:system_variables|schema)(?:\s|`|\/\*[\s\S]*?\*\/|#[^\n]*\n|--\s[^\n]*\n)*:?=/i;
export const TLS_REQUIRED = 'TLS with a vigil client certificate is required';
const ERR_CONN_ACCESS_DENIED = { code: 1044, sqlState: '42000' };

/** What the connection keeps of a command in flight. */
interface Command {
  record: (res: CommandResponse, started: number) => void;
  details: QueryFields;
}

function scrambleBytes(): Buffer {
  // Printable, no NUL: some clients treat the scramble as a C string.
  const b = randomBytes(20);
  for (let i = 0; i < b.length; i++) b[i] = 0x21 + (b[i]! % 0x5e);
  return b;
}

/**
 * The statements of `sql` as the guardrails' grammar must be given them: split where the server splits
 * (`a`, analysed under `mode` and `charsets`), each rewritten so that node-sql-parser's fixed lexing reads
 * what the server reads, once per reading the server may apply (a sql_mode not known, or changed by the
 * text itself). Rewritten: `--` followed by no space (two minus signs to the server, a comment to the
 * grammar) gets a space; under NO_BACKSLASH_ESCAPES a string's backslashes are doubled (the grammar
 * always takes them for escapes); under ANSI_QUOTES a "…" identifier becomes `…`. Unreadable (refused
 * when a rule refuses what it cannot check): text whose boundaries the splitter is not certain of, a
 * multi-byte character whose trail byte is a backslash or backtick (the grammar reads the escaped text
 * byte by byte), executable comments, and a text that may switch the character set before a byte the
 * switch would re-read.
 */
/** One statement, or one followed by comments only (`KILL 5; -- why`): a KILL there is on its own. */
const aloneButComments = (a: SqlAnalysis) => a.statements.every((s, i) => i === 0 || s.commentOnly);

export function guardStatements(sql: string, a: SqlAnalysis, mode: SqlMode, charsets: readonly (Multibyte | undefined)[] = [undefined]): MysqlStatement[] {
  // The server runs `/*! … */` code the grammar takes for a comment (analyseMysql says so too, whole).
  if (/\/\*M?!/i.test(sql)) return [{ unreadable: 'executable comments (/*! … */) run on the server but cannot be checked' }];
  // A statement switching the character set makes the server read the ones after it in the new one, which
  // the splitter (reading the whole text in the session's current set) cannot follow.
  if (CHARSET_SWITCH.test(sql) && TRAIL_PAIR.test(sql)) return [{ unreadable: 'the text switches the character set before bytes the switch would re-read' }];
  // As analyzeSql: the mode may change within the text (SET sql_mode, or dynamic SQL run by EXECUTE).
  const mentioned = /sql_mode|\bexecute\b/i.test(sql);
  const ways = (known: boolean | undefined, matters: boolean) => (known === undefined || mentioned ? (matters ? [false, true] : [known ?? false]) : [known]);
  const lexings: { nbe: boolean; tokens: Token[] }[] = [];
  for (const nbe of ways(mode.noBackslashEscapes, sql.includes('\\')))
    for (const ansi of ways(mode.ansiQuotes, sql.includes('"')))
      for (const m of charsets) lexings.push({ nbe, tokens: tokenize(sql, { noBackslashEscapes: nbe, ansiQuotes: ansi, conditionalRuns: true, multibyte: m }).tokens });
  const out: MysqlStatement[] = [];
  for (const s of a.statements) {
    // A comment-only segment has nothing for the grammar to check (the server answers it with an empty OK).
    if (s.end <= s.start || s.commentOnly) continue;
    if (s.unsplit) {
      out.push({ unreadable: 'vigil cannot tell where the statements of this text end' });
      continue;
    }
    const hidden = charsets.some((m) => {
      if (m === undefined) return false;
      for (let i = s.start; i < s.end; i++) if (m(i) === 5 && (sql[i + 4] === '\\' || sql[i + 4] === '`')) return true;
      return false;
    });
    if (hidden) {
      out.push({ unreadable: 'a multi-byte character ends in a backslash or backtick byte, which the SQL grammar would read as one' });
      continue;
    }
    out.push({ readings: lexings.map((l) => asServerReads(sql, s.start, s.end, l.tokens, l.nbe)) });
  }
  return out;
}

/** Words of the statements that may change character_set_client (SET NAMES, SET CHARACTER SET, SET
 *  [@@]character_set_client…), matched loosely: comments may stand between them. */
const CHARSET_SWITCH = /\b(?:names|charset|character)/i;
/** A non-ASCII byte (`\xHH` in escaped text, any non-ASCII character otherwise) right before a backslash or backtick. */
const TRAIL_PAIR = /(?:[\u0080-\uffff]|\\x[89A-F][0-9A-F])[\\`]/;

/** `sql.slice(start, end)` rewritten so that node-sql-parser reads what the server reads from `tokens`. */
function asServerReads(sql: string, start: number, end: number, tokens: Token[], nbe: boolean): string {
  let out = '';
  let at = start;
  let prev: Token | undefined;
  for (const t of tokens) {
    if (t.end <= start) continue;
    if (t.start >= end) break;
    const q = sql.charCodeAt(t.start);
    if (t.kind === 'punct' && t.text === '-' && prev?.kind === 'punct' && prev.text === '-' && prev.end === t.start) {
      out += `${sql.slice(at, t.start)} `;
      at = t.start;
    } else if (t.kind === 'string' && nbe && (q === 39 || q === 34) && t.end - t.start >= 2 && sql.charCodeAt(t.end - 1) === q) {
      const body = sql.slice(t.start + 1, t.end - 1);
      if (body.includes('\\')) {
        out += sql.slice(at, t.start) + sql[t.start] + body.replace(/\\/g, '\\\\') + sql[t.start];
        at = t.end;
      }
    } else if (t.kind === 'ident' && q === 34) {
      out += `${sql.slice(at, t.start)}\`${t.text.replace(/`/g, '``')}\``;
      at = t.end;
    }
    prev = t;
  }
  return out + sql.slice(at, end);
}

export class MysqlConnection implements KillableConnection {
  user: string | undefined;
  targetName: string | undefined;
  /** Guardrails that apply to this session's roles on its target (none: nothing is asked). */
  private guard: SessionGuardrails | undefined;
  backendThreadId: number | undefined;
  /** Set while a KILL CONNECTION of this backend thread, sent through vigil, is pending or done. */
  private killedBy: { session: string } | undefined;
  readonly sessionId: string;
  private readonly connectionId: number;
  private client: net.Socket | tls.TLSSocket;
  private backend: BackendConnection | undefined;
  private session: OpenSession | undefined;
  private principal: Principal | undefined;
  private target: TargetConfig | undefined;
  private login: string | undefined;
  private clientCaps = 0;
  private stripQueryAttributes = false;
  private database: string | undefined;
  /** sql_mode as the server's last OK/EOF announced it (status flag 0x200 = NO_BACKSLASH_ESCAPES), for the SQL splitter. */
  private sqlMode: SqlMode = {};
  /** The backend session reports state changes in OK packets (CLIENT_SESSION_TRACK): the recorded
   *  database and sql_mode follow them instead of SQL text. */
  private serverTracking = false;
  /** The client did not ask for CLIENT_SESSION_TRACK: OK packets reach it without the session-state block. */
  private stripTracking = false;
  private backendCaps = 0;
  /** The lexer-relevant part of sql_mode as the server last reported it (tracked variable, probe). */
  private serverMode: SqlMode = {};
  /** character_set_client as the server last reported it (tracked variable, probe): the server reads
   *  statement text in it, so a multi-byte character may hide a backslash or a backtick from a byte reader. */
  private serverCharset: string | undefined;
  /** Client commands naming a statement id held until the COM_STMT_PREPAREs in flight are answered. */
  private prepareWaiters: (() => void)[] = [];
  /** What must be learned from the server before the next client command: `probe` reads the database
   *  and sql_mode, `setup` also turns tracking on again (COM_RESET_CONNECTION resets it). */
  private refresh: 'none' | 'probe' | 'setup' = 'none';
  /** Vigil's own queries are on the wire: the relay leaves the backend's bytes to them. */
  private intercepting = false;
  /** vigil's own queries sent and not yet answered (syncState). */
  private internalInFlight: { sqls: readonly string[]; started: number } | undefined;
  private multiStatements = true;
  private tracker: CommandTracker<Command> | undefined;
  private readonly statements: PreparedStatements;
  private closed = false;
  /** COM_QUIT received: no more client commands are read; the session ends once the backend closes. */
  private quitting = false;
  private quitRecorded = false;
  private deadlines: PreAuthDeadlines | undefined;
  private stopStallWatch: (() => void) | undefined;
  private counted = false;
  private releaseSource: (() => void) | undefined;
  /** Client packets received while an asynchronous check (USE authorization) runs. */
  private inbox: Packet[] = [];
  private busy = false;
  private clientPaused = false;
  private backendPaused = false;
  private readonly log;
  /** What vigil's greeting offered: the greeting target's capabilities that vigil can relay. */
  private capabilities = 0;
  private mariadbCapabilities = 0;
  private clientMariadbCaps = 0;
  private greetingCharset = CHARSET_UTF8MB4;

  constructor(private readonly shared: MysqlShared, socket: net.Socket, private readonly ctx: ConnectionContext) {
    this.client = socket;
    this.sessionId = ctx.id;
    this.log = ctx.log;
    this.connectionId = shared.ids.allocate(this);
    this.statements = new PreparedStatements(shared.secretName);
  }

  start(): void {
    const { services, unauthenticated } = this.shared;
    const sock = this.client;
    sock.setNoDelay(true);
    sock.on('error', () => this.shutdown('client_closed'));
    sock.on('close', () => this.shutdown('client_closed'));
    const tooMany = (limit: string) => recordPreAuthRefused(services, { protocol: 'mysql', source: this.ctx.remote, connId: this.ctx.id, phase: 'accept' }, 'too_many_unauthenticated', { limit });
    if (unauthenticated.count >= services.config.gateway.max_unauthenticated) {
      tooMany('gateway.max_unauthenticated');
      this.fatal(0, { ...ERR.HANDSHAKE, code: 1040, message: 'Too many connections waiting to authenticate; try again.' }, 'error');
      return;
    }
    this.releaseSource = this.shared.perSource.acquire(this.ctx.remote.ip);
    if (!this.releaseSource) {
      tooMany('pre_auth.max_per_source');
      this.fatal(0, { ...ERR.HANDSHAKE, code: 1040, message: 'Too many connections from your address waiting to authenticate; try again.' }, 'error');
      return;
    }
    unauthenticated.count++;
    this.counted = true;
    // Slowloris: the handshake (SSLRequest + TLS) and the whole unauthenticated phase each have a deadline.
    this.deadlines = new PreAuthDeadlines(services, { protocol: 'mysql', source: this.ctx.remote, connId: this.ctx.id }, 'ssl_request', (message) => {
      if (this.deadlines!.phase === 'tls_handshake') {
        // Mid-handshake no MySQL packet can be read by the client: just close.
        this.client.destroy();
        return this.shutdown('protocol_error');
      }
      this.fatal(0, { ...ERR.HANDSHAKE, message: `vigil: ${message}` }, 'protocol_error');
    });
    // The first greetings after start wait for the probe of the greeting target (bounded by connect_timeout).
    void this.shared.identities.ready().then(() => {
      if (!this.closed) this.greet();
    });
  }

  /** The greeting: the greeting target's own version, charset and status, with the capabilities vigil relays. */
  private greet(): void {
    const sock = this.client;
    const id = this.shared.identities.current();
    const offered = SERVER_CAPABILITIES | (this.shared.section.query_attributes ? CLIENT.QUERY_ATTRIBUTES : 0);
    // CLIENT_MYSQL (LONG_PASSWORD) clear means "MariaDB, with extended capabilities": as the server says.
    this.capabilities = (offered & (id.capabilities | CLIENT.SSL)) >>> 0;
    this.mariadbCapabilities = id.capabilities & CLIENT.LONG_PASSWORD ? 0 : id.mariadbCapabilities & OFFERED_MARIADB_CAPABILITIES;
    this.greetingCharset = id.charset || CHARSET_UTF8MB4;
    sock.write(
      encodePacket(
        0,
        buildGreeting({
          serverVersion: id.serverVersion,
          connectionId: this.connectionId,
          scramble: scrambleBytes(),
          capabilities: this.capabilities,
          mariadbCapabilities: this.mariadbCapabilities,
          charset: this.greetingCharset,
          status: id.status,
          authPlugin: 'mysql_native_password',
        }),
      ),
    );
    const framer = new PacketFramer(4096);
    const onData = (chunk: Buffer) => {
      try {
        framer.push(chunk, (p) => {
          sock.off('data', onData);
          // Whatever follows the SSLRequest goes to the TLS layer: a ClientHello passes, plaintext bytes
          // (a command smuggled in before the upgrade) fail the TLS handshake and close the connection.
          this.onFirstPacket(p, framer.takeRemainder());
        });
      } catch (e) {
        this.protocolFailure(e, 2);
      }
    };
    sock.on('data', onData);
  }

  private onFirstPacket(p: Packet, remainder: Buffer): void {
    if (p.seq !== 1) throw new ProtocolError('out-of-sequence handshake response', 'VIGIL_MYSQL_SEQUENCE');
    const hs = parseClientHandshake(p.payload);
    if (!hs.sslRequest || p.payload.length !== SSL_REQUEST_LENGTH || !(hs.capabilities & CLIENT.SSL)) {
      // A login without TLS: refuse with a clear message and an auth.failure event.
      this.client.pause();
      void this.refuse(2, hs.user, { ok: false, reason: 'no_certificate', message: TLS_REQUIRED, detail: 'client did not request TLS' }, hs.database);
      return;
    }
    this.client.pause();
    // Node's TLSSocket feeds what is already buffered in the socket to the TLS layer first.
    if (remainder.length > 0) this.client.unshift(remainder);
    const secure = new tls.TLSSocket(this.client as net.Socket, { isServer: true, secureContext: this.shared.services.identity.tlsContext(), requestCert: true, rejectUnauthorized: false });
    this.client = secure;
    this.deadlines!.phase = 'tls_handshake';
    secure.once('secure', () => {
      this.deadlines!.handshakeDone();
      this.deadlines!.phase = 'handshake_response';
    });
    secure.on('error', (e: Error & { code?: string }) => {
      this.log.debug({ err: e.message }, 'TLS error');
      // Plaintext smuggled after the SSLRequest, another protocol, a TLS alert: an undecodable handshake,
      // on record (budgeted). A client that merely went away (a reset) refused nothing.
      if (this.counted && this.deadlines?.phase === 'tls_handshake' && e.code?.startsWith('ERR_SSL_')) {
        recordPreAuthProtocolError(this.shared.services, { protocol: 'mysql', source: this.ctx.remote, connId: this.ctx.id, phase: 'tls_handshake', error: `TLS handshake failed: ${e.message}` });
      }
      this.shutdown('client_closed');
    });
    secure.on('close', () => this.shutdown('client_closed'));
    // Before authentication only the handshake response and the token reply come: a small limit, checked
    // on the length header before the payload is buffered.
    const framer = new PacketFramer(this.shared.services.config.pre_auth.max_message_size);
    let step: 'response' | 'token' | 'done' = 'response';
    let hsResponse: ReturnType<typeof parseClientHandshake> | undefined;
    const onData = (chunk: Buffer) => {
      try {
        framer.push(chunk, (pk) => {
          if (step === 'response') {
            if (pk.seq !== 2) throw new ProtocolError('out-of-sequence handshake response', 'VIGIL_MYSQL_SEQUENCE');
            hsResponse = parseClientHandshake(pk.payload);
            if (hsResponse.sslRequest) throw new ProtocolError('empty handshake response', 'VIGIL_MYSQL_MALFORMED');
            const der = (secure.getPeerCertificate(false) as { raw?: Buffer } | null)?.raw;
            if (der && der.length > 0) {
              step = 'done';
              secure.off('data', onData);
              secure.pause();
              const cred = this.shared.services.identity.verifyClientCertificate(der, this.ctx.remote.ip);
              void this.authenticated(hsResponse, cred, 3, { method: 'x509' });
            } else {
              // No certificate: ask for the vigil token as a clear-text password (the channel is TLS).
              step = 'token';
              this.deadlines!.phase = 'token';
              secure.write(encodePacket(3, buildAuthSwitch('mysql_clear_password', Buffer.alloc(0))));
            }
          } else if (step === 'token') {
            if (pk.seq !== 4) throw new ProtocolError('out-of-sequence auth response', 'VIGIL_MYSQL_SEQUENCE');
            step = 'done';
            secure.off('data', onData);
            secure.pause();
            const nul = pk.payload.indexOf(0);
            const token = pk.payload.subarray(0, nul < 0 ? pk.payload.length : nul).toString('utf8');
            const cred: VerifyResult = token
              ? this.shared.services.identity.verifyToken(token, this.ctx.remote.ip)
              : { ok: false, reason: 'no_certificate', message: `${TLS_REQUIRED} (or a vigil token as password)` };
            void this.authenticated(hsResponse!, cred, 5, { method: 'token' });
          } else {
            throw new ProtocolError('data before authentication finished', 'VIGIL_MYSQL_SEQUENCE');
          }
        });
      } catch (e) {
        this.protocolFailure(e, step === 'token' ? 5 : 3);
      }
    };
    secure.on('data', onData);
    this.client.resume();
  }

  private splitUser(field: string): { targetName: string; login?: string } {
    const slash = field.indexOf('/');
    if (slash < 0) return { targetName: field };
    return { targetName: field.slice(0, slash), login: field.slice(slash + 1) || undefined };
  }

  private admitRequest(userField: string, credential: VerifyResult, database: string | undefined, details: Record<string, unknown>): AdmitRequest {
    const { targetName, login } = this.splitUser(userField);
    return { protocol: 'mysql', connId: this.sessionId, source: this.ctx.remote, credential, targetName, login, database, details };
  }

  private async refuse(seq: number, userField: string, credential: VerifyResult, database?: string): Promise<void> {
    const adm = await admit(this.shared.services, this.admitRequest(userField, credential, database, { method: 'none' })).catch(() => undefined);
    const message = adm && !adm.ok ? adm.message : TLS_REQUIRED;
    this.fatal(seq, { ...ERR.ACCESS_DENIED, message }, 'error');
  }

  private async authenticated(hs: ReturnType<typeof parseClientHandshake>, cred: VerifyResult, seq: number, details: Record<string, unknown>): Promise<void> {
    const { services } = this.shared;
    this.deadlines!.phase = 'admission';
    try {
      const asked = this.admitRequest(hs.user, cred, hs.database, details);
      const req: AdmitRequest = { ...asked, refusal: (target) => loginRefusal(target, asked.login) };
      const adm = await admit(services, req);
      if (!adm.ok) return this.fatal(seq, { ...ERR.ACCESS_DENIED, message: adm.message }, 'error');
      // A client gone by now (auth.success is written) still gets its session on record: opened, then
      // ended at once below, so the log never stops at an auth.success.
      this.principal = adm.principal;
      this.target = adm.target;
      this.user = adm.principal.user;
      this.targetName = adm.target.name;
      this.guard = services.guardrails?.forSession({ roles: [...adm.principal.roles, ...adm.decision.roles], target: adm.target.name });
      // With user_provisioning the session logs in as the engineer's own account (TARGET/dbuser was refused by loginRefusal).
      const provisioning = adm.target.user_provisioning as UserProvisioning | undefined;
      this.login = provisioning ? accountName(provisioning.name_pattern, adm.principal.user, 26) : (req.login ?? (adm.target.user as string));
      // The account's password is vigil's alone: statements that would change how it logs in are refused.
      this.guard = await guardrailsForLogin(provisioning ? this.login : undefined, this.guard);
      this.database = hs.database ?? (adm.target.database as string | undefined);
      this.clientCaps = (hs.capabilities & this.capabilities) >>> 0;
      this.clientMariadbCaps = hs.capabilities & CLIENT.LONG_PASSWORD ? 0 : ((hs.mariadbCapabilities ?? 0) & this.mariadbCapabilities) >>> 0;
      this.multiStatements = (this.clientCaps & CLIENT.MULTI_STATEMENTS) !== 0;
      this.session = await openSession(services, { ...req, login: this.login, database: this.database }, adm, (reason, message) => this.terminate(reason, message), {
        client_attributes: hs.attributes,
        connection_id: this.connectionId,
      });
      if (this.closed) return void this.session.end(this.closeReason ?? 'client_closed', { target_reached: false });
      if (this.counted) {
        this.shared.unauthenticated.count--;
        this.releaseSource?.();
        this.counted = false;
      }
      this.deadlines?.clear();
      let backend: BackendConnection;
      try {
        const attributes = { _client_name: 'vigil', program_name: hs.attributes.program_name ?? '', vigil_user: adm.principal.user, vigil_session: this.sessionId };
        const connect = (t: ReturnType<typeof this.backendTarget>) => connectBackend(t, this.backendCapabilities(), hs.charset || this.greetingCharset, services.config.gateway.connect_timeout, attributes, this.clientMariadbCaps);
        if (provisioning) {
          const session = this.session;
          const leased = await backendAccounts(services).lease(
            {
              target: adm.target,
              sessionId: session.handle.id,
              roles: adm.decision.roles,
              user: adm.principal.user,
              eventBase: session.eventBase(),
              driver: mysqlAccounts(adm.target, provisioning, services.config.gateway.connect_timeout),
            },
            (cred) => connect({ ...this.backendTarget(adm.target, cred), user: cred.user, password: cred.password }),
          );
          backend = leased.value;
          leased.lease.backendId = backend.greeting.connectionId;
        } else {
          backend = await connect(this.backendTarget(adm.target));
        }
      } catch (e) {
        if (e instanceof ProvisioningError) {
          this.log.warn({ err: e.message, target: adm.target.name }, 'backend account provisioning failed');
          this.fatal(seq, { ...ERR.BACKEND_UNAVAILABLE, message: `vigil: could not prepare your database account on target ${adm.target.name}; the operator can see why in the audit log` }, 'backend_error', { error: e.message });
          return;
        }
        const message = e instanceof VigilError ? e.message : 'cannot reach the target database';
        this.log.warn({ err: message, target: adm.target.name }, 'backend login failed');
        // The server's own refusal (1044 no access to the database, 1040 too many connections, ...) reaches
        // the client as the server wrote it: code, SQLSTATE and message.
        if (e instanceof BackendRefusedLogin) return this.fatal(seq, e.serverError, 'backend_error', { error: message });
        this.fatal(seq, { ...ERR.BACKEND_UNAVAILABLE, message: `vigil: ${message}` }, 'backend_error', { error: message });
        return;
      }
      if (this.closed) return void backend.socket.destroy();
      this.shared.identities.learn(adm.target.name, backend.greeting);
      const tracking = backend.capabilities & CLIENT.SESSION_TRACK;
      this.serverTracking = tracking !== 0;
      this.stripTracking = tracking !== 0 && !(this.clientCaps & CLIENT.SESSION_TRACK);
      // Session tracking the client did not ask for is cut out of OK packets (stripTracking), not a mismatch.
      const mismatch = (this.clientCaps ^ backend.capabilities) & FORMAT_CAPABILITIES & ~(this.stripTracking ? CLIENT.SESSION_TRACK : 0);
      if (mismatch || backend.mariadbCapabilities !== this.clientMariadbCaps) {
        backend.socket.destroy();
        return this.fatal(seq, { ...ERR.HANDSHAKE, message: `vigil: the target database does not support protocol capabilities the client uses (0x${mismatch.toString(16)}/0x${(backend.mariadbCapabilities ^ this.clientMariadbCaps).toString(16)})` }, 'backend_error');
      }
      this.stripQueryAttributes = (this.clientCaps & CLIENT.QUERY_ATTRIBUTES) !== 0 && !(backend.capabilities & CLIENT.QUERY_ATTRIBUTES);
      this.backend = backend;
      this.backendThreadId = backend.greeting.connectionId;
      this.backendCaps = backend.capabilities;
      this.tracker = new CommandTracker((this.clientCaps | tracking) >>> 0, this.trackerSink);
      this.sqlMode = { noBackslashEscapes: (backend.ok.status & 0x200) !== 0 };
      if (this.serverTracking) await this.syncState('setup');
      if (this.closed) return;
      this.client.write(encodePacket(seq, buildOk({ status: backend.ok.status })));
      this.relay();
    } catch (e) {
      this.log.error({ err: e }, 'mysql session setup failed');
      this.fatal(seq, { ...ERR.HANDSHAKE, message: 'vigil: the session could not be started' }, 'error');
    }
  }

  /** Where and as whom to log in: the target's configured login, or the provisioned account's credential. */
  private backendTarget(t: TargetConfig, provisioned?: AccountCredential) {
    const login = this.login!;
    const logins = (t.logins ?? {}) as Record<string, SecretRef>;
    let ref: SecretRef | undefined;
    if (provisioned) ref = undefined;
    else if (login === t.user) ref = t.password as SecretRef | undefined;
    else if (logins[login]) ref = logins[login];
    else throw new ProtocolError(`no credentials configured for database user ${login}`, 'VIGIL_MYSQL_NO_LOGIN');
    const tlsOpt = t.tls as boolean | undefined;
    return {
      host: t.host,
      port: t.port,
      user: provisioned?.user ?? login,
      password: provisioned?.password ?? (ref ? readSecret(ref) : ''),
      database: this.database,
      tls: tlsOpt ? { ca: t.tls_ca as string | undefined } : (false as const),
      serverPublicKey: t.server_public_key_file ? readSecretFile(t.server_public_key_file as string) : undefined,
      allowPublicKeyRetrieval: t.allow_public_key_retrieval === true,
      name: t.name,
    };
  }

  private backendCapabilities(): number {
    // SESSION_TRACK always (when the server offers it): the recorded database and sql_mode come from it.
    const wanted = (this.clientCaps | CLIENT.SESSION_TRACK | CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION | CLIENT.PLUGIN_AUTH | CLIENT.PLUGIN_AUTH_LENENC_CLIENT_DATA | CLIENT.CONNECT_ATTRS | CLIENT.MULTI_RESULTS) & ~(CLIENT.SSL | CLIENT.LOCAL_FILES | CLIENT.COMPRESS | CLIENT.ZSTD_COMPRESSION);
    return wanted >>> 0;
  }

  // ---------------- command phase ----------------

  private relay(): void {
    const client = this.client;
    const backend = this.backend!.socket;
    const clientFramer = new PacketFramer(this.shared.section.max_packet);
    const tracker = this.tracker!;
    const onPacket = (p: Packet) => {
      if (this.busy) this.inbox.push(p);
      else this.onClientPacket(p);
    };
    client.on('data', (chunk: Buffer) => {
      this.session!.stats.bytesFromClient += chunk.length;
      // What the packets of one chunk forward (pipelined commands, long data) leaves in one write.
      this.outbox = [];
      try {
        clientFramer.push(chunk, onPacket);
      } catch (e) {
        this.protocolFailure(e, e instanceof PacketTooLarge ? e.replySeq : 1);
      } finally {
        this.flushOutbox();
      }
    });
    backend.on('data', (chunk: Buffer) => {
      // Answers to vigil's own queries are read by them (session-query.ts), never relayed.
      if (this.intercepting) return;
      this.session!.stats.bytesToClient += chunk.length;
      if (this.stripTracking) return this.relayStripped(chunk);
      // The server's bytes go to the client as they came: one write per read, however many packets. (A
      // client gone after its COM_QUIT gets nothing; the answers are still followed and recorded.)
      if (client.writable && !client.write(chunk) && !this.backendPaused) {
        // The client reads slower than the server answers: stop reading the server until it drains.
        this.backendPaused = true;
        backend.pause();
        client.once('drain', () => {
          this.backendPaused = false;
          backend.resume();
        });
      }
      try {
        tracker.server(chunk);
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, 'backend protocol error');
        this.backendLost('backend_error', 'vigil: the target database sent a response vigil cannot follow; the session is closed');
      }
    });
    backend.on('error', (e) => {
      this.log.warn({ err: e.message }, 'backend connection error');
      this.backendLost('backend_error', `vigil: lost the connection to the target database (${e.message})`);
    });
    backend.on('close', () => this.backendLost('backend_closed', 'vigil: the target database closed the connection'));
    // A client that stopped reading: the backend is paused above (bounded memory); after
    // slow_clients.write_stall_timeout without progress the session ends (what ran is recorded).
    const stallMs = this.shared.services.config.slow_clients.write_stall_timeout;
    this.stopStallWatch = watchWriteStall(client as net.Socket, stallMs, () =>
      this.session!.handle.terminate('write_stall', `the client read none of the pending results for ${Math.round(stallMs / 1000)} s; the session is closed.`),
    );
    const idle = this.shared.services.config.gateway.idle_timeout;
    if (idle > 0) {
      // Idle = no client traffic while no response is outstanding (a long query is not idleness).
      client.setTimeout(idle);
      client.on('timeout', () => {
        if (this.tracker!.pending === 0) this.session!.handle.terminate('idle_timeout', 'The session was idle too long and is closed.');
      });
    }
    client.resume();
  }

  /** Server bytes for a client without CLIENT_SESSION_TRACK: OK packets are rewritten as it expects them. */
  private relayStripped(chunk: Buffer): void {
    let out: Buffer;
    try {
      out = this.tracker!.serverStripped(chunk);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'backend protocol error');
      return this.backendLost('backend_error', 'vigil: the target database sent a response vigil cannot follow; the session is closed');
    }
    if (out.length > 0 && this.client.writable && !this.client.write(out) && !this.backendPaused) {
      this.backendPaused = true;
      this.backend!.socket.pause();
      this.client.once('drain', () => {
        this.backendPaused = false;
        this.backend!.socket.resume();
      });
    }
  }

  /**
   * Learn the session's state from the server with vigil's own queries (session-query.ts), while no
   * client command is in flight: the current database and sql_mode, after turning tracking on (`setup`).
   * Each is recorded as a `db.session_query` event; a failure ends the session.
   */
  private async syncState(kind: 'probe' | 'setup'): Promise<void> {
    const sqls = kind === 'setup' ? [SESSION_SETUP, SESSION_PROBE] : [SESSION_PROBE];
    this.refresh = 'none';
    // vigil's own queries reach the backend too, so they follow the same rule as the client's: nothing
    // is sent while the log cannot be written, and in strict mode their intent is durable first.
    const events = this.shared.services.events;
    if (!events.healthy) throw new ProtocolError('the audit log cannot be written; vigil did not run its session query', 'VIGIL_AUDIT_UNAVAILABLE');
    if (events.durability === 'strict') {
      for (const sql of sqls) await events.beforeForward(this.eventInput('db.session_query', 'unknown', { query: sql, intent: true }));
    }
    const t0 = performance.now();
    this.intercepting = true;
    // Until answered they are in flight like a client's command: a session ending meanwhile records them.
    this.internalInFlight = { sqls, started: t0 };
    let answers;
    try {
      answers = await internalQueries(this.backend!.socket as net.Socket, this.backendCaps, sqls, this.shared.services.config.gateway.connect_timeout);
    } finally {
      this.intercepting = false;
    }
    // The session ended while they were in flight: shutdown recorded them.
    if (this.internalInFlight === undefined) return;
    this.internalInFlight = undefined;
    const duration = round(performance.now() - t0);
    for (const a of answers) {
      const r = a.response.results[a.response.results.length - 1] ?? {};
      const details: QueryFields = { duration_ms: duration, query: a.sql };
      addResult(details, r);
      if (a.row) {
        // A database the session reached without an OK saying so (a failed compound statement, a CALL)
        // is authorized like one an OK reports.
        const db = a.row[0] ?? undefined;
        if (db !== undefined && db !== this.database) this.verifyDatabase(db);
        this.database = db;
        this.setSqlMode(a.row[1] ?? '');
        this.sqlMode = this.serverMode;
        this.serverCharset = a.row[2]?.toLowerCase() ?? undefined;
      }
      this.emitQuery('COM_QUERY', r.error ? 'failure' : 'success', details, 'db.session_query');
      if (r.error) throw new ProtocolError(`the target database refused vigil's session query: ${r.error.message}`, 'VIGIL_MYSQL_SESSION_STATE');
    }
    // The client's command that waits for this state goes out only once that database is allowed.
    await this.databaseCheck;
  }

  private setSqlMode(text: string): void {
    const modes = text.toUpperCase().split(',');
    this.serverMode = { noBackslashEscapes: modes.includes('NO_BACKSLASH_ESCAPES'), ansiQuotes: modes.includes('ANSI_QUOTES') || modes.includes('ANSI') };
  }

  /** The server's session-state report for one result: the database it switched to, sql_mode. */
  private applyChanges(r: ResultSummary): void {
    const c = r.changes;
    if (!c) return;
    if (c.schema !== undefined) {
      const db = c.schema === '' ? undefined : c.schema;
      if (db !== undefined && db !== this.database) this.verifyDatabase(db);
      this.database = db;
    }
    const mode = c.variables?.sql_mode;
    if (mode !== undefined) this.setSqlMode(mode);
    const charset = c.variables?.character_set_client;
    if (charset !== undefined) this.serverCharset = charset.toLowerCase();
  }

  /** An authorization check of a database the server switched to; the client's next command waits for it. */
  private databaseCheck: Promise<void> | undefined;

  /**
   * The server switched databases (however the switch was written: EXECUTE IMMEDIATE, PREPARE, quoting
   * that hid a USE from the text check): the role's `databases` decide whether the session may stay. If
   * not, it is closed with an ERR before any further command is forwarded. Defence in depth: the switch
   * itself has run; the backend's own privileges are what keeps other databases out of reach.
   */
  private verifyDatabase(db: string): void {
    const previous = this.databaseCheck ?? Promise.resolve();
    const check = previous
      .then(() => this.shared.services.authz.authorize({ principal: this.principal!, target: this.targetName!, protocol: 'mysql', login: this.login, database: db }))
      .then((decision) => {
        if (decision.allow || this.closed) return;
        this.log.warn({ database: db, user: this.user }, 'session switched to a database the role does not allow; closing it');
        const seq = this.tracker && this.tracker.pending > 0 ? this.tracker.nextServerSeq : 0;
        this.fatal(seq, { ...ERR_CONN_ACCESS_DENIED, message: `vigil: the session switched to database '${db}', which ${this.user} may not use; the session is closed` }, 'error', { error: 'database_not_allowed', database: db, reason: decision.reason });
      })
      .catch((e: unknown) => {
        // Deny by default: a check that cannot be made closes the session.
        this.log.error({ err: (e as Error).message, database: db }, 'database authorization failed');
        this.fatal(0, { ...ERR_CONN_ACCESS_DENIED, message: 'vigil: the database switch could not be authorized; the session is closed' }, 'error', { error: 'database_check_failed', database: db });
      })
      .finally(() => {
        if (this.databaseCheck === check) this.databaseCheck = undefined;
      });
    this.databaseCheck = check;
  }

  /** Bytes for the backend collected while one client chunk is handled; undefined outside of that. */
  private outbox: Buffer[] | undefined;

  private forward(p: Packet | Buffer): void {
    // Unchanged packets leave as the bytes that came in; only rewritten commands are encoded again.
    const bytes = Buffer.isBuffer(p) ? encodePacket(0, p) : (p.wire ?? encodePacket(p.seq, p.payload));
    if (this.outbox) this.outbox.push(bytes);
    else this.writeBackend(bytes);
  }

  private flushOutbox(): void {
    const out = this.outbox!;
    this.outbox = undefined;
    if (out.length === 0 || this.closed) return;
    if (out.length === 1) return this.writeBackend(out[0]!);
    let total = 0;
    for (const b of out) total += b.length;
    if (total <= 64 * 1024) return this.writeBackend(Buffer.concat(out, total));
    // Large payloads (long data, 16 MiB packets) are not copied: one vectored write.
    const backend = this.backend!.socket;
    backend.cork();
    for (let i = 0; i < out.length - 1; i++) backend.write(out[i]!);
    this.writeBackend(out[out.length - 1]!);
    backend.uncork();
  }

  private writeBackend(bytes: Buffer): void {
    if (!this.backend!.socket.write(bytes) && !this.clientPaused) {
      // The server reads slower than the client sends (bulk loads): stop reading the client until it drains.
      this.clientPaused = true;
      this.client.pause();
      this.backend!.socket.once('drain', () => {
        this.clientPaused = false;
        if (!this.busy) this.client.resume();
      });
    }
  }

  /** Sequence id of the last wire packet of the command being handled: one that spanned several 16 MiB
   *  packets is answered from the one after its last, as the server answers it. */
  private commandLastSeq = 0;

  /** Reply locally, after the responses of earlier pipelined commands; `seq` counts from the command's end (1: the first reply packet). */
  private replyLocal(seq: number, payload: Buffer): void {
    const bytes = encodePacket((this.commandLastSeq + seq) & 0xff, payload);
    if (this.tracker!.local(bytes)) this.client.write(bytes);
  }

  /**
   * Forward a command that gets a response. `details` describe it for the events written before its
   * response is seen (db.query.start when it runs long, db.query `unknown` when the session ends first);
   * `record` writes its event once the response is complete.
   */
  private send(p: Packet | Buffer, shape: ResponseShape, command: string, details: QueryFields, record: (res: CommandResponse, started: number) => void): Promise<void> | void {
    const events = this.shared.services.events;
    // Fail closed: nothing reaches the backend while its record cannot be written.
    if (!events.healthy) return this.auditRefused(command, details, events.failure);
    if (events.durability === 'strict') {
      // Strict: the intent (db.query.start) is durable before the first byte is forwarded; the command
      // is held (later client packets queue behind it) until then.
      const durable = events.beforeForward(this.eventInput('db.query.start', 'unknown', this.queryDetails(command, details)));
      if (durable) {
        return durable.then(
          () => {
            if (!this.closed) this.forwardCommand(p, shape, command, details, record, true);
          },
          (e: unknown) => this.auditRefused(command, details, e),
        );
      }
    }
    this.forwardCommand(p, shape, command, details, record, false);
  }

  private forwardCommand(p: Packet | Buffer, shape: ResponseShape, command: string, details: QueryFields, record: (res: CommandResponse, started: number) => void, intentRecorded: boolean): void {
    this.forward(p);
    const lastSeq = Buffer.isBuffer(p) ? wirePacketCount(p.length) - 1 : p.lastSeq;
    const cmd = this.tracker!.sent(shape, command, performance.now(), { record, details }, lastSeq);
    // The strict-mode intent already says the command started: no second start event when it runs long.
    if (intentRecorded) cmd.startRecorded = true;
    else this.armLongRunning();
  }

  /** The audit log cannot take this command's record: it is not forwarded, the client gets an ERR and the session ends. */
  private auditRefused(command: string, details: QueryFields, cause: unknown): void {
    if (this.closed) return;
    this.log.error({ err: (cause as Error | undefined)?.message, command, query: details.query }, 'audit log unavailable; command refused and session ended');
    const seq = this.tracker && this.tracker.pending > 0 ? this.tracker.nextServerSeq : 1;
    this.fatal(seq, { ...ERR.AUDIT_UNAVAILABLE, message: 'vigil: the audit log cannot be written, so the statement was not run; the session is closed' }, 'audit_unavailable');
  }

  // ---------------- commands in flight ----------------

  /** The one long-running timer of this session; armed for the oldest command without a start event. */
  private longTimer: NodeJS.Timeout | undefined;

  private armLongRunning(): void {
    const after = this.shared.services.config.audit.long_running_after;
    if (!(after > 0) || this.longTimer || this.closed) return;
    const next = this.tracker!.inFlight().find((c) => !c.startRecorded);
    if (!next) return;
    this.longTimer = setTimeout(this.onLongRunning, Math.max(0, next.started + after - performance.now()));
    this.longTimer.unref();
  }

  private readonly onLongRunning = (): void => {
    this.longTimer = undefined;
    if (this.closed) return;
    const after = this.shared.services.config.audit.long_running_after;
    const now = performance.now();
    for (const c of this.tracker!.inFlight()) {
      if (c.startRecorded) continue;
      if (now - c.started < after) break;
      c.startRecorded = true;
      this.emitQuery(c.command, 'unknown', { ...c.data.details, duration_ms: round(now - c.started) }, 'db.query.start');
    }
    this.armLongRunning();
  };

  /**
   * The session ends with commands still in flight: each reached the backend, its result was never seen.
   * Written before session.end, with what was relayed of the oldest one's response.
   */
  private recordInFlight(reason: EndReason): void {
    const internal = this.internalInFlight;
    this.internalInFlight = undefined;
    if (internal) {
      const f = { duration_ms: round(performance.now() - internal.started), end_reason: reason };
      for (const sql of internal.sqls) this.emitQuery('COM_QUERY', 'unknown', { ...f, query: sql }, 'db.session_query');
    }
    const tracker = this.tracker;
    if (!tracker) return;
    const now = performance.now();
    const progress = tracker.progress();
    tracker.inFlight().forEach((c, i) => {
      const f: QueryFields = { ...c.data.details, duration_ms: round(now - c.started), end_reason: reason, rows_returned: i === 0 ? progress.rows : 0, bytes_relayed: i === 0 ? progress.bytes : 0 };
      this.emitQuery(c.command, 'unknown', f);
    });
    tracker.abandon();
  }

  private readonly trackerSink: TrackerSink<Command> = {
    response: (cmd, res) => {
      if (!this.closed) cmd.data.record(res, cmd.started);
      if (cmd.command === 'COM_STMT_PREPARE') this.wakePrepareWaiters();
      for (const r of res.results) {
        const mode = r.changes?.variables?.sql_mode;
        if (mode !== undefined) this.setSqlMode(mode);
        const charset = r.changes?.variables?.character_set_client;
        if (charset !== undefined) this.serverCharset = charset.toLowerCase();
      }
      if (this.serverTracking) {
        // The status flag NO_BACKSLASH_ESCAPES (0x200) is in every OK, tracked or not: when it disagrees
        // with the tracked sql_mode, the tracking vigil set up is gone (switched off in a way the text
        // check of refuseStatement did not see: dynamic SQL, a stored routine). Set it up again and read
        // the state back before the next command; until then the mode is unknown.
        const last = res.results[res.results.length - 1];
        const endsWithStatus = cmd.command === 'COM_QUERY' || cmd.command === 'COM_STMT_EXECUTE';
        if (endsWithStatus && last && !last.error && this.refresh === 'none' && ((res.status & 0x200) !== 0) !== (this.serverMode.noBackslashEscapes ?? false)) this.refresh = 'setup';
        // sql_mode changes arrive as a tracked variable (applied per result in `applyChanges`); while a
        // probe is due (after a reset, or a compound statement that failed) the mode is not known.
        this.sqlMode = this.refresh === 'none' ? this.serverMode : {};
      } else if (res.results[res.results.length - 1]?.error) {
        // A failed statement may have left sql_mode changed or not: unknown until the next OK says.
        this.sqlMode = {};
      } else {
        this.sqlMode = { noBackslashEscapes: (res.status & 0x200) !== 0 };
      }
    },
    local: (bytes) => this.client.write(bytes),
  };

  /** A COM_STMT_PREPARE is in flight: the statement id it will get is not known until its answer. */
  private preparePending(): boolean {
    return this.tracker!.inFlight().some((c) => c.command === 'COM_STMT_PREPARE');
  }

  /** Resolves once no COM_STMT_PREPARE is in flight any more (their answers have bound their ids). */
  private preparesAnswered(): Promise<void> {
    return new Promise((resolve) => this.prepareWaiters.push(resolve));
  }

  private wakePrepareWaiters(): void {
    if (this.prepareWaiters.length === 0 || this.preparePending()) return;
    const waiters = this.prepareWaiters;
    this.prepareWaiters = [];
    for (const w of waiters) w();
  }

  private onClientPacket(p: Packet): void {
    // Nothing after a COM_QUIT is read, as by the server.
    if (this.closed || this.quitting) return;
    try {
      if (p.seq !== 0) throw new ProtocolError('out-of-sequence command packet', 'VIGIL_MYSQL_SEQUENCE');
      // A database switch the server reported is authorized before anything else is forwarded; state
      // the server holds but did not report is learned first, while nothing is in flight.
      const check = this.databaseCheck;
      const run = (): Promise<void> | void =>
        this.refresh !== 'none' && this.tracker!.pending === 0
          ? this.syncState(this.refresh).then(() => {
              if (!this.closed) return this.handleCommand(p);
            })
          : this.handleCommand(p);
      const wait = check
        ? check.then(() => {
            if (!this.closed) return run();
          })
        : run();
      if (wait) {
        this.busy = true;
        this.client.pause();
        wait
          .catch((e) => this.protocolFailure(e, 1))
          .finally(() => {
            this.busy = false;
            const queued = this.inbox;
            this.inbox = [];
            for (const q of queued) {
              if (this.busy) this.inbox.push(q);
              else this.onClientPacket(q);
            }
            if (!this.busy && !this.closed && !this.clientPaused) this.client.resume();
          });
      }
    } catch (e) {
      this.protocolFailure(e, wirePacketCount(p.payload.length));
    }
  }

  /** Handle one command; returns a promise when it needs an asynchronous check first. */
  private handleCommand(p: Packet): Promise<void> | void {
    this.commandLastSeq = p.lastSeq;
    const cmd = parseCommand(p.payload, this.clientCaps);
    const name = COMMAND_NAMES[p.payload[0]!] ?? `COM_0x${p.payload[0]!.toString(16)}`;
    const stats = this.session!.stats;
    // A statement id not yet confirmed, while a COM_STMT_PREPARE is in flight, is probably the one that
    // prepare will get (MariaDB numbers them in order): the command waits for the prepare's answer, so
    // that it is decoded against the statement the server will run (never forwarded undecoded).
    if ('stmtId' in cmd && (cmd.stmtId === LAST_PREPARED || !this.statements.known(cmd.stmtId)) && this.preparePending()) {
      return this.preparesAnswered().then(() => {
        if (!this.closed) return this.handleCommand(p);
      });
    }
    switch (cmd.kind) {
      case 'query': {
        const text = this.lexable(cmd.sqlBytes, cmd);
        return this.onQuery(p, text.sql, cmd.attributes, text.escaped ? cmd.sqlBytes : undefined, text.charsets);
      }
      case 'init_db':
        return this.checkDatabase(cmd.database, name, `USE ${cmd.database}`).then((ok) => {
          if (!ok) return;
          stats.statements++;
          return this.send(p, 'results', name, { query: `USE ${cmd.database}` }, (res, t0) => {
            if (!this.serverTracking && !res.results[0]?.error) this.database = cmd.database;
            this.record(name, res, t0, { query: `USE ${cmd.database}` });
          });
        });
      case 'stmt_prepare': {
        const text = this.lexable(p.payload.subarray(1), cmd);
        const mode = this.tracker!.pending === 0 ? this.sqlMode : {};
        const analysis = analyzeSql(text.sql, this.shared.secretName, mode, text.charsets);
        if (this.refuseStatement(analysis, name) || this.refuseByGuardrail(text.sql, name, analysis, mode, text.charsets)) return;
        stats.statements++;
        // The statement id is bound to its text only when the server confirms the prepare.
        const escaped = text.escaped ? true : undefined;
        return this.send(p, 'prepare', name, { query: redactedText(analysis), text_escaped: escaped }, (res, t0) => {
          if (res.prepared) this.statements.prepared(res.prepared.stmtId, analysis, res.prepared.numParams);
          else this.statements.refused();
          this.record(name, res, t0, { params_count: res.prepared?.numParams, query: redactedText(analysis), statement_id: res.prepared?.stmtId, text_escaped: escaped });
        });
      }
      case 'stmt_execute':
        return this.onExecute(p, cmd.stmtId, cmd.flags, name);
      case 'stmt_send_long_data':
        this.statements.longData(cmd.stmtId, cmd.paramId, cmd.data);
        this.forward(p);
        return;
      case 'stmt_close': {
        const id = this.statements.resolve(cmd.stmtId);
        const analysis = this.statements.analysisOf(id);
        this.statements.close(id);
        this.forward(p);
        this.emitQuery(name, 'success', { duration_ms: 0, query: analysis ? redactedText(analysis) : undefined, statement_id: id });
        return;
      }
      case 'stmt_reset': {
        const id = this.statements.resolve(cmd.stmtId);
        this.statements.reset(id);
        return this.send(p, 'results', name, { statement_id: id }, (res, t0) => this.record(name, res, t0, { statement_id: id }));
      }
      case 'stmt_fetch': {
        const id = this.statements.resolve(cmd.stmtId);
        const analysis = this.statements.analysisOf(id);
        const query = analysis ? redactedText(analysis) : undefined;
        return this.send(p, 'fetch', name, { fetch_rows: cmd.rows, query, statement_id: id }, (res, t0) => this.record(name, res, t0, { fetch_rows: cmd.rows, query, statement_id: id }));
      }
      case 'ping':
        return this.send(p, 'results', name, {}, (res, t0) => this.record(name, res, t0, {}));
      case 'quit':
        // As the server does, what came before the QUIT runs: the commands still in flight (those of the same
        // write included) reach the backend and are answered and recorded. The server closes the
        // connection once it has read the QUIT; that close (`backendLost`) ends the session.
        this.quitting = true;
        this.forward(p);
        if (this.outbox) {
          this.flushOutbox();
          this.outbox = [];
        }
        this.backend!.socket.end();
        if (this.tracker!.pending === 0) this.endAfterQuit();
        return;
      case 'set_option':
        return this.send(p, 'results', name, { multi_statements: cmd.option === 0 }, (res, t0) => {
          if (!res.results[0]?.error) this.multiStatements = cmd.option === 0;
          this.record(name, res, t0, { multi_statements: cmd.option === 0 });
        });
      case 'process_kill':
        return this.onKill(cmd.id, false, name, `COM_PROCESS_KILL ${cmd.id}`);
      case 'reset_connection':
        // Same identity, same backend login: session variables, prepared statements, user variables are
        // reset; the server keeps the current database. The reset also turns vigil's session tracking
        // off (session variables return to their global values): it is set up again, and the database and
        // sql_mode read back, before the next command.
        return this.send(p, 'results', name, {}, (res, t0) => {
          if (!res.results[0]?.error) {
            this.statements.clear();
            if (this.serverTracking) this.refresh = 'setup';
          }
          this.record(name, res, t0, {});
        });
      case 'change_user':
        // Refused, whatever user it names: the backend login is vigil's (its credentials never reach the
        // client), so a client-side re-authentication could only change it to one vigil did not check.
        // The session, its database and its recorded identity stay as they were.
        this.emitQuery(name, 'failure', { duration_ms: 0, error: { code: ERR.NOT_ALLOWED_COMMAND.code, message: 'refused by vigil' }, reason: 'change_user_not_allowed' });
        this.replyLocal(1, buildErr({ ...ERR.NOT_ALLOWED_COMMAND, message: 'vigil: COM_CHANGE_USER is not allowed; reconnect with the identity you need' }));
        return;
      case 'other':
        if (cmd.command === COM.REFRESH) {
          // The FLUSH statements' older form (mariadb-admin flush-*): allowed like FLUSH over COM_QUERY, the
          // server checks the RELOAD privilege. Recorded with the flags it names.
          const query = `COM_REFRESH ${refreshOptions(p.payload[1] ?? 0)}`;
          stats.statements++;
          return this.send(p, 'results', name, { query }, (res, t0) => this.record(name, res, t0, { query }));
        }
        if (cmd.command === COM.FIELD_LIST) {
          // The table whose columns are listed (and the column wildcard), as the server's general log names them.
          const query = fieldListText(p.payload);
          return this.send(p, 'fieldlist', name, { query }, (res, t0) => this.record(name, res, t0, { query }));
        }
        if (cmd.command === COM.STATISTICS) return this.send(p, 'single', name, {}, (res, t0) => this.record(name, res, t0, {}));
        this.emitQuery(name, 'failure', { duration_ms: 0, error: { code: ERR.UNKNOWN_COM.code, message: 'refused by vigil' } });
        this.replyLocal(1, buildErr({ ...ERR.UNKNOWN_COM, message: `vigil: ${name} is not allowed through the gateway` }));
        return;
    }
  }

  /**
   * Statement text as vigil analyses and records it, read as the server reads it. In a character set
   * whose multi-byte characters may end in a backslash or a backtick (gbk, big5, sjis, cp932) the text is
   * kept escaped (`\xHH` per byte >= 0x80) and lexed with the server's grouping of bytes into characters.
   * When the character set is not known (no session tracking, or commands in flight that may change it)
   * and the text holds such a pair, it is lexed under every grouping, and the analysis records it whole
   * (and checks it in every reading) unless all agree: never a guess.
   */
  private lexable(bytes: Buffer, parsed: { sql: string; escaped: boolean }): { sql: string; escaped: boolean; charsets: (Multibyte | undefined)[] } {
    const known = this.serverTracking && this.tracker!.pending === 0 && this.refresh === 'none';
    const charset = known ? this.serverCharset : undefined;
    if (charset !== undefined && !(charset in ASCII_TRAIL_CHARSETS)) return { ...parsed, charsets: [undefined] };
    if (!hasAsciiTrail(bytes)) return { ...parsed, charsets: [undefined] };
    const { sql } = statementText(bytes, true);
    if (charset !== undefined) return { sql, escaped: true, charsets: [multibyteReader(bytes, charset)] };
    // sjis and cp932 group bytes alike.
    return { sql, escaped: true, charsets: [undefined, multibyteReader(bytes, 'gbk'), multibyteReader(bytes, 'big5'), multibyteReader(bytes, 'sjis')] };
  }

  /** Refuse statements vigil does not pass: KILL in a batch or of unmapped form, LOAD DATA LOCAL, a
   *  change of the session tracking vigil's record depends on. */
  private refuseStatement(a: SqlAnalysis, command: string): boolean {
    // The recorded database, sql_mode (statement splitting) and character set (lexing) follow the server's
    // session-state reports; with them switched off vigil would go on with stale values. Refused wherever
    // the assignment is written, a string to be prepared or executed included.
    if (this.serverTracking && a.statements.some((s) => TRACKING_ASSIGNMENT.test(s.text))) {
      this.refuseLocal(command, a, 'vigil: changing session_track_system_variables or session_track_schema is not allowed: the gateway\'s record depends on session-state tracking', ERR.NOT_ALLOWED_COMMAND);
      return true;
    }
    for (const s of a.statements) {
      // Inside a compound block (or text whose boundaries are not certain) vigil cannot apply the checks
      // below statement by statement, so those statements are refused there altogether.
      if (s.restricted?.length) {
        this.refuseLocal(command, a, `vigil: ${s.restricted.join(', ')} is not allowed inside a compound statement or a multi-statement text vigil cannot split`, ERR.NOT_ALLOWED_COMMAND);
        return true;
      }
      if (s.keyword === 'KILL' && (!aloneButComments(a) || !s.kill || 'unsupported' in s.kill || (command !== 'COM_QUERY' && !this.preparableKill(s.kill.id)))) {
        const why = command === 'COM_QUERY' || !s.kill || 'unsupported' in s.kill ? '' : '; a prepared KILL takes the thread id CONNECTION_ID() returns for one of your own connections to this target';
        this.refuseLocal(command, a, `vigil: only "KILL [QUERY|CONNECTION] <id>" on its own is allowed, with the id of one of your own connections${why}`, ERR.NOT_ALLOWED_COMMAND);
        return true;
      }
      if (s.keyword === 'LOAD' && /^LOAD\s+(DATA|XML)\s+(LOW_PRIORITY\s+|CONCURRENT\s+)?LOCAL\b/i.test(s.text)) {
        this.refuseLocal(command, a, 'vigil: LOAD DATA LOCAL INFILE is disabled (the gateway does not read client files)', ERR.NOT_ALLOWED_COMMAND);
        return true;
      }
    }
    return false;
  }

  /**
   * Guardrails (src/guardrails): the whole text is decided before anything is forwarded; a refused one
   * gets an ERR naming the rule (in order behind what is in flight), a guardrail event, and its db.query.
   * The grammar is given the statements as the server splits and reads them (guardStatements), never the
   * raw text: its own lexing knows neither sql_mode, nor the character set, nor the `-- ` rule.
   */
  private refuseByGuardrail(sql: string, command: string, a: SqlAnalysis, mode: SqlMode, charsets: readonly (Multibyte | undefined)[] = [undefined]): boolean {
    if (!this.guard?.guardsSql) return false;
    const d = this.guard.checkMysqlStatements(guardStatements(sql, a, mode, charsets));
    if (d.action === 'allow') return false;
    const { message, hint } = refusalMessage(d, 'statement');
    this.emit(d.unparsed ? 'guardrail.unparsed' : 'guardrail.blocked', 'failure', { command, decision: d.action, query: redactedText(a), reason: d.reason, rule: d.rule });
    this.refuseLocal(command, a, `${message}. ${hint}`, ERR.GUARDRAIL);
    return true;
  }

  /**
   * A prepared `KILL <id>` (COM_STMT_PREPARE) is forwarded as written, so it may only name a backend thread
   * of this user's own connection to this target: vigil cannot map a handshake id inside a prepared
   * statement the server runs later.
   */
  private preparableKill(id: number): boolean {
    return this.shared.ids.resolveOwn(id, this.user, this.targetName)?.by === 'backend_thread_id';
  }

  private refuseLocal(command: string, a: SqlAnalysis | undefined, message: string, code: { code: number; sqlState: string }): void {
    this.emitQuery(command, 'failure', { duration_ms: 0, error: { code: code.code, message, sqlstate: code.sqlState }, query: a ? redactedText(a) : undefined });
    this.replyLocal(1, buildErr({ ...code, message }));
  }

  /** `rawSql`: the statement's bytes when they are not UTF-8 (`sql` then has them escaped for the record). */
  private onQuery(p: Packet, sql: string, attributes: Record<string, ParamValue> | undefined, rawSql?: Buffer, charsets?: (Multibyte | undefined)[]): Promise<void> | void {
    const mode = this.tracker!.pending === 0 ? this.sqlMode : {};
    const analysis = analyzeSql(sql, this.shared.secretName, mode, charsets);
    const first = analysis.statements[0]!;
    if (aloneButComments(analysis) && first.kill && !('unsupported' in first.kill)) return this.onKill(first.kill.id, first.kill.query, 'COM_QUERY', sql);
    if (this.refuseStatement(analysis, 'COM_QUERY') || this.refuseByGuardrail(sql, 'COM_QUERY', analysis, mode, charsets)) return;
    const useStatements = analysis.statements.filter((s) => s.keyword === 'USE');
    if (useStatements.some((s) => !s.use)) {
      this.refuseLocal('COM_QUERY', analysis, 'vigil: only "USE database_name" is allowed to switch databases', ERR_CONN_ACCESS_DENIED);
      return;
    }
    const uses = useStatements.map((s) => s.use!);
    const go = () => {
      this.session!.stats.statements += analysis.statements.length;
      const bytes = this.stripQueryAttributes ? Buffer.concat([Buffer.from([COM.QUERY]), rawSql ?? Buffer.from(sql, 'utf8')]) : p;
      const escaped = rawSql ? true : undefined;
      return this.send(bytes, 'results', 'COM_QUERY', { attributes, query: redactedText(analysis), text_escaped: escaped }, (res, t0) => this.recordQuery(analysis, res, t0, attributes, escaped));
    };
    if (uses.length === 0) return go();
    return (async () => {
      for (const db of uses) if (!(await this.checkDatabase(db, 'COM_QUERY', redactedText(analysis)))) return;
      await go();
    })();
  }

  /** Authorize a database switch (authz `database`); refuse with an ERR and an event when not allowed. */
  private async checkDatabase(db: string | undefined, command: string, query: string | undefined): Promise<boolean> {
    if (!db) return true;
    const decision = await this.shared.services.authz.authorize({ principal: this.principal!, target: this.targetName!, protocol: 'mysql', login: this.login, database: db });
    if (decision.allow) return true;
    const message = `vigil: access to database '${db}' is not allowed for ${this.user}`;
    this.emitQuery(command, 'failure', { duration_ms: 0, error: { code: ERR_CONN_ACCESS_DENIED.code, message, sqlstate: ERR_CONN_ACCESS_DENIED.sqlState }, query, reason: decision.reason });
    this.replyLocal(1, buildErr({ ...ERR_CONN_ACCESS_DENIED, message }));
    return false;
  }

  private recordQuery(a: SqlAnalysis, res: CommandResponse, entryStart: number, attributes: Record<string, ParamValue> | undefined, escaped?: true): void {
    const stmts = a.statements;
    let prev = entryStart;
    // One event per result set; statements after an error never ran and are named in that error's event.
    // A compound statement or CALL answers with several results (its inner result sets, then its own OK).
    // When an EXECUTE's share of the results cannot be told, no result is given to one statement: each
    // is recorded with the whole text, marked unsplit.
    const { owners, certain } = attributeResults(stmts, res.results);
    const whole: StatementInfo | undefined = certain ? undefined : { text: redactedText(a), start: 0, end: 0, keyword: '', unsplit: true };
    for (let i = 0; i < res.results.length; i++) {
      const r = res.results[i]!;
      const owner = Math.min(owners[i] ?? stmts.length - 1, stmts.length - 1);
      const s = whole ?? stmts[owner]!;
      const isLast = i === res.results.length - 1;
      // The server's word on the database (session tracking); the text of a plain USE only when the
      // server cannot say (no CLIENT_SESSION_TRACK).
      if (this.serverTracking) this.applyChanges(r);
      else if (!r.error && s.use) this.database = s.use;
      const details: QueryFields = { duration_ms: round(res.ends[i]! - prev), query: eventText(s.text), text_escaped: escaped };
      addResult(details, r);
      if (stmts.length > 1 && !whole) details.statement_index = owner;
      if (s.unsplit) details.unsplit = true;
      // A compound statement (or a CALL, or text vigil could not split) that failed may have switched the
      // database or sql_mode before failing, and no OK said so: ask the server before the next command.
      if (r.error && this.serverTracking && this.refresh === 'none' && (s.compound || s.unsplit || s.keyword === 'CALL')) this.refresh = 'probe';
      if (isLast && r.error && !whole && owner < stmts.length - 1) details.not_executed = stmts.slice(owner + 1).map((x) => x.text);
      if (attributes) details.attributes = attributes;
      this.emitQuery('COM_QUERY', r.error ? 'failure' : 'success', details);
      prev = res.ends[i]!;
    }
  }

  private onExecute(p: Packet, rawId: number, flags: number, name: string): Promise<void> | void {
    if (this.stripQueryAttributes && flags & PARAMETER_COUNT_AVAILABLE) {
      throw new ProtocolError('query attributes on COM_STMT_EXECUTE are not supported by the target database', 'VIGIL_MYSQL_UNSUPPORTED');
    }
    // (handleCommand held it until no prepare was in flight.) An id the server never confirmed to this
    // session cannot be decoded: whatever the server would do with it, it is not relayed blind.
    if (!this.statements.known(rawId)) {
      const id = this.statements.resolve(rawId);
      const message = `Unknown prepared statement handler (${id}) given to mysqld_stmt_execute`;
      this.emitQuery(name, 'failure', { duration_ms: 0, error: { code: ERR.UNKNOWN_STMT_HANDLER.code, message, sqlstate: ERR.UNKNOWN_STMT_HANDLER.sqlState }, statement_id: id, unknown_statement: true });
      this.replyLocal(1, buildErr({ ...ERR.UNKNOWN_STMT_HANDLER, message }));
      return;
    }
    this.session!.stats.statements++;
    // A cursor request (flags bits 0-2) may get a result set without rows: they come with COM_STMT_FETCH.
    const shape = flags & 0x07 ? 'cursor' : 'results';
    const details = this.executeDetails(p.payload, rawId);
    return this.send(p, shape, name, details, (res, t0) => this.record(name, res, t0, details));
  }

  private executeDetails(payload: Buffer, rawId: number): QueryFields {
    const ex = this.statements.execute(payload, rawId, this.clientCaps);
    // A prepared KILL CONNECTION (only ever of the user's own backend thread: see refuseStatement).
    const kill = ex.analysis?.statements.length === 1 ? ex.analysis.statements[0]!.kill : undefined;
    if (kill && !('unsupported' in kill) && !kill.query) this.shared.ids.resolveOwn(kill.id, this.user, this.targetName)?.conn.killRequested(this.sessionId);
    return ex.analysis
      ? { attributes: ex.attributes, params: ex.params, query: redactedText(ex.analysis), statement_id: ex.statementId }
      : { attributes: ex.attributes, statement_id: ex.statementId, unknown_statement: true };
  }

  /**
   * KILL [QUERY] <id>: a handshake id (vigil's) or a backend thread id (CONNECTION_ID()'s) of a connection
   * of the same user on the same target, sent to the server as that connection's backend thread id.
   */
  private onKill(id: number, query: boolean, command: string, text: string): Promise<void> | void {
    const found = this.shared.ids.resolveOwn(id, this.user, this.targetName);
    // db.cancel details are written with their members in sorted order, like db.query (see `emitQuery`).
    const kill = query ? 'query' : 'connection';
    if (!found) {
      const message = `Unknown thread id: ${id}`;
      this.emit('db.cancel', 'failure', { command, database: this.database, gateway_connection_id: id, kill, query: text, reason: this.shared.ids.get(id) ? 'not_owner' : 'unknown_connection' });
      this.replyLocal(1, buildErr({ ...ERR.NO_SUCH_THREAD, message }));
      return;
    }
    const target = found.conn;
    const backendSql = `KILL ${query ? 'QUERY' : 'CONNECTION'} ${target.backendThreadId}`;
    this.session!.stats.statements++;
    const bytes = Buffer.concat([Buffer.from([COM.QUERY]), this.clientCaps & CLIENT.QUERY_ATTRIBUTES && !this.stripQueryAttributes ? Buffer.from([0, 1]) : Buffer.alloc(0), Buffer.from(backendSql)]);
    // Before the KILL goes out: the killed thread's socket may close before this session reads the OK.
    if (!query) target.killRequested(this.sessionId);
    return this.send(bytes, 'results', command, { query: text }, (res) => {
      const err = res.results[0]?.error;
      if (err && !query) target.killRequested(undefined);
      const error = err ? errDetails(err) : undefined;
      this.emit('db.cancel', err ? 'failure' : 'success', { backend_thread_id: target.backendThreadId, command, database: this.database, error, gateway_connection_id: found.by === 'gateway_id' ? id : undefined, kill, query: text, target_session_id: target.sessionId });
    });
  }

  // The recording helpers below fill in the `QueryFields` object they are given: each call site builds a
  // fresh one per command.

  private record(command: string, res: CommandResponse, start: number, details: QueryFields): void {
    for (const x of res.results) this.applyChanges(x);
    const r = res.results[res.results.length - 1] ?? {};
    details.duration_ms = round((res.ends[res.ends.length - 1] ?? performance.now()) - start);
    addResults(details, res.results);
    this.emitQuery(command, r.error ? 'failure' : 'success', details);
  }

  /**
   * One object literal with every db.query member in sorted order: all events share one hidden class, and
   * the audit log's canonical JSON encoder (keys sorted) writes an object whose keys already come sorted
   * directly, about twice as fast as building a sorted copy for JSON.stringify. Undefined members are
   * left out of the recorded JSON. Objects nested in it (error, parameter summaries) are built sorted too.
   */
  private emitQuery(command: string, outcome: Outcome, f: QueryFields, type: 'db.query' | 'db.query.start' | 'db.session_query' = 'db.query'): void {
    this.emit(type, outcome, this.queryDetails(command, f));
  }

  private queryDetails(command: string, f: QueryFields): Record<string, unknown> {
    return {
      attributes: f.attributes,
      bytes_relayed: f.bytes_relayed,
      command,
      database: this.database,
      duration_ms: f.duration_ms,
      end_reason: f.end_reason,
      error: f.error,
      fetch_rows: f.fetch_rows,
      multi_statements: f.multi_statements,
      not_executed: f.not_executed,
      params: f.params,
      params_count: f.params_count,
      query: f.query,
      reason: f.reason,
      rows_affected: f.rows_affected,
      rows_returned: f.rows_returned,
      statement_id: f.statement_id,
      statement_index: f.statement_index,
      text_escaped: f.text_escaped,
      unknown_statement: f.unknown_statement,
      unsplit: f.unsplit,
    };
  }

  /** Frozen event target for a database other than the session's first one (see `emit`). */
  private eventTarget: AuditEvent['target'] | undefined;

  /**
   * High-rate events are not awaited and allocate no promise (`record`); a failed write (audit log down)
   * ends the session: fail closed. The event target names the current database: the session's own frozen
   * target while the database is the one it started with, else a frozen copy built once per change —
   * frozen and reused because the audit encoder caches the JSON of frozen envelope parts by identity.
   */
  private emit(type: EventType, outcome: Outcome, details: Record<string, unknown>): void {
    if (!this.session) return;
    this.shared.services.events.record(this.eventInput(type, outcome, details), this.auditFailed);
  }

  private eventInput(type: EventType, outcome: Outcome, details: Record<string, unknown>): EventInput {
    const base = this.session!.eventBase();
    const database = this.database;
    let target = base.target;
    if (target.database !== database) {
      if (this.eventTarget === undefined || this.eventTarget.database !== database) this.eventTarget = Object.freeze({ ...target, database });
      target = this.eventTarget;
    }
    return { type, outcome, actor: base.actor, source: base.source, session_id: base.session_id, target, details };
  }

  private readonly auditFailed = (e: unknown): void => {
    this.log.error({ err: (e as Error).message }, 'audit write failed; ending session');
    this.session?.handle.terminate('audit_unavailable', 'vigil cannot write its audit log; the session is closed.');
  };

  // ---------------- ending ----------------

  private closeReason: EndReason | undefined;

  /** The backend connection is gone or unusable: the client gets an ERR and its socket is closed. */
  private backendLost(reason: EndReason, message: string): void {
    // After a COM_QUIT the server's close is the expected end; what it did not answer is recorded `unknown`.
    if (this.quitting) return this.endAfterQuit();
    const seq = this.tracker && this.tracker.pending > 0 ? this.tracker.nextServerSeq : 0;
    if (this.killedBy) {
      // What the server says to a thread it kills mid-statement, when it says anything: clients and test
      // suites treat 1927 as the connection killed, 1053 as the server going down.
      this.fatal(seq, { ...ERR.CONNECTION_KILLED, message: `vigil: Connection was killed (KILL CONNECTION from session ${this.killedBy.session})` }, reason, { killed_by_session: this.killedBy.session });
      return;
    }
    this.fatal(seq, { ...ERR.SERVER_SHUTDOWN, message }, reason);
  }

  killRequested(by: string | undefined): void {
    this.killedBy = by === undefined ? undefined : { session: by };
  }

  /** Registry terminator: ERR with the message, then close. */
  private terminate(reason: EndReason, message: string): void {
    const seq = this.tracker && this.tracker.pending > 0 ? this.tracker.nextServerSeq : 0;
    this.fatal(seq, { ...ERR.CONNECTION_KILLED, message: `vigil: ${message}` }, reason);
  }

  private protocolFailure(e: unknown, seq: number): void {
    const code = e instanceof VigilError ? e.code : 'VIGIL_MYSQL_ERROR';
    if (!(e instanceof VigilError)) this.log.error({ err: e }, 'unexpected error in mysql connection');
    const kind = code === 'VIGIL_MYSQL_OVERSIZED' ? ERR.NET_PACKET_TOO_LARGE : code === 'VIGIL_MYSQL_SEQUENCE' ? ERR.NET_PACKETS_OUT_OF_ORDER : ERR.NET_READ_ERROR;
    const message = e instanceof ProtocolError ? `vigil: ${e.message}` : 'vigil: internal error';
    // Before authentication there is no session to end on record: the refusal itself is (budgeted).
    if (this.counted && e instanceof ProtocolError) {
      recordPreAuthProtocolError(this.shared.services, { protocol: 'mysql', source: this.ctx.remote, connId: this.ctx.id, phase: this.deadlines?.phase ?? 'handshake_response', error: e.message });
    }
    this.fatal(seq, { ...kind, message }, 'protocol_error', { error: code });
  }

  /** Send an ERR (best effort) and close the connection. */
  private fatal(seq: number, err: ErrPacket, reason: EndReason, details: Record<string, unknown> = {}): void {
    if (this.closed) return;
    try {
      if (!this.client.destroyed && this.client.writable) this.client.end(encodePacket(seq, buildErr(err)));
    } catch {
      // The client may be gone already.
    }
    setTimeout(() => this.client.destroy(), 1000).unref();
    this.shutdown(reason, details);
  }

  /** The client sent COM_QUIT and the commands before it are answered (or the backend is gone). */
  private endAfterQuit(): void {
    if (this.quitRecorded || this.closed) return;
    this.quitRecorded = true;
    this.recordInFlight('client_closed');
    this.emitQuery('COM_QUIT', 'success', { duration_ms: 0 });
    this.shutdown('client_closed');
  }

  private shutdown(reason: EndReason, details: Record<string, unknown> = {}): void {
    if (this.closed) return;
    // A client commonly closes right after its COM_QUIT: the commands it sent before are still answered
    // and recorded, and the server's close (or any other end) ends the session.
    if (reason === 'client_closed' && this.quitting && !this.quitRecorded) return;
    this.closed = true;
    this.closeReason = reason;
    this.deadlines?.clear();
    this.stopStallWatch?.();
    if (this.counted) {
      this.shared.unauthenticated.count--;
      this.releaseSource?.();
      this.counted = false;
    }
    clearTimeout(this.longTimer);
    this.shared.ids.release(this.connectionId);
    this.backend?.socket.destroy();
    if (reason === 'client_closed') this.client.destroy();
    this.recordInFlight(reason);
    // The backend's own id for this connection: what its logs (general log, processlist) call it.
    void this.session?.end(reason, this.backendThreadId === undefined ? details : { ...details, backend_thread_id: this.backendThreadId });
  }
}

/**
 * With user_provisioning every engineer logs in as their own account: a login named by the client
 * (TARGET/dbuser) is refused, decided in admission so the record is an auth.failure, not an auth.success
 * followed by a disconnect.
 */
function loginRefusal(target: TargetConfig, login: string | undefined): { reason: string; message: string } | undefined {
  if (!target.user_provisioning || login === undefined) return undefined;
  return { reason: 'login_not_allowed', message: `vigil: target ${target.name} gives every engineer their own database account; connect as ${target.name}` };
}

/** COM_REFRESH option bits (REFRESH_GRANT, REFRESH_LOG, ...) as words for the record. */
const REFRESH_OPTIONS = ['grant', 'log', 'tables', 'hosts', 'status', 'threads', 'slave', 'master'] as const;

function refreshOptions(bits: number): string {
  const names = REFRESH_OPTIONS.filter((_, i) => bits & (1 << i));
  return names.length > 0 ? names.join(',') : '0x0';
}

/** COM_FIELD_LIST's arguments for the record: `COM_FIELD_LIST <table>[ <wildcard>]` (NUL-terminated table name,
 *  then the wildcard to the end; bytes that are not UTF-8 written as `\xHH`). */
function fieldListText(payload: Buffer): string {
  const args = payload.subarray(1);
  const nul = args.indexOf(0);
  const table = statementText(nul < 0 ? args : args.subarray(0, nul)).sql;
  const wildcard = nul < 0 ? '' : statementText(args.subarray(nul + 1)).sql;
  return wildcard === '' ? `COM_FIELD_LIST ${table}` : `COM_FIELD_LIST ${table} ${wildcard}`;
}

function readSecretFile(p: string): string {
  return readSecret({ file: p });
}
