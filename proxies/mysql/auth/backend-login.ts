/**
 * The client side of the connection phase towards a backend, as a pure state machine: it gets the
 * server's packets and says what to send back. Handles mysql_native_password, caching_sha2_password
 * (fast path, full authentication over TLS or with the server's RSA key), sha256_password, MariaDB's
 * client_ed25519, mysql_clear_password (TLS only) and AuthSwitchRequest between them.
 */
import { BackendError, ProtocolError } from '../../../src/errors.ts';
import { buildClientHandshake, parseAuthSwitch, parseErr, parseOk, type ErrPacket, type Greeting, type OkPacket } from '../handshake.ts';
import { CLIENT } from '../wire.ts';
import { mariadbEd25519Sign } from './ed25519.ts';
import { CACHING_SHA2, cachingSha2Scramble, clearPassword, nativePasswordScramble, rsaEncryptedPassword } from './scramble.ts';

export interface BackendLoginOptions {
  user: string;
  password: string;
  database?: string;
  /** Capabilities to ask for (intersected with the server's). */
  capabilities: number;
  /** MariaDB extended capabilities to ask for (intersected with the server's; only when it is MariaDB). */
  mariadbCapabilities?: number;
  charset: number;
  maxPacket: number;
  /** The channel is TLS (allows clear-text full authentication). */
  tls: boolean;
  /** Server RSA public key (PEM) if configured; otherwise it is requested when needed and allowed. */
  serverPublicKey?: string;
  /**
   * Ask the server for its RSA key over the unencrypted connection (caching_sha2_password /
   * sha256_password full authentication without TLS or a configured key). Off by default: a man in the
   * middle can hand over its own key and decrypt the password, which is why stock drivers refuse too.
   */
  allowPublicKeyRetrieval?: boolean;
  /** The target's name, for the refusal's message. */
  targetName?: string;
  attributes?: Record<string, string>;
}

/**
 * The server wants the password RSA-encrypted to a key vigil would have to fetch over plaintext, and the
 * target neither uses TLS, nor configures the key, nor opts in to fetching it. The message is for the
 * client and the audit log: it names the target and the remedies, never the password.
 */
export class PublicKeyRetrievalRefused extends BackendError {
  constructor(plugin: string, targetName: string | undefined) {
    const target = targetName ? `target ${targetName}` : 'the target';
    super(
      `${target} asks for ${plugin} full authentication over an unencrypted connection; vigil does not fetch the server's RSA public key without TLS ` +
        `(a man in the middle could substitute its own and read the password). Configure tls, server_public_key_file, or allow_public_key_retrieval: true on ${target}`,
    );
  }
}

export type LoginStep =
  | { kind: 'send'; payload: Buffer }
  | { kind: 'wait' }
  | { kind: 'ok'; ok: OkPacket }
  | { kind: 'error'; err: ErrPacket };

export class BackendLogin {
  private plugin = '';
  private scramble: Buffer = Buffer.alloc(0);
  private awaitingPublicKey = false;
  capabilities = 0;
  mariadbCapabilities = 0;

  constructor(private readonly o: BackendLoginOptions) {}

  /** The HandshakeResponse41 payload for the server's greeting. */
  handshakeResponse(g: Greeting): Buffer {
    this.capabilities = (this.o.capabilities & g.capabilities) | CLIENT.PROTOCOL_41;
    if (!this.o.tls) this.capabilities &= ~CLIENT.SSL;
    if (this.o.database) this.capabilities |= CLIENT.CONNECT_WITH_DB & g.capabilities;
    else this.capabilities &= ~CLIENT.CONNECT_WITH_DB;
    // Asking for MariaDB extensions means clearing CLIENT_MYSQL, which only a MariaDB server expects.
    this.mariadbCapabilities = ((this.o.mariadbCapabilities ?? 0) & (g.mariadbCapabilities ?? 0)) >>> 0;
    if (this.mariadbCapabilities) this.capabilities &= ~CLIENT.LONG_PASSWORD;
    this.scramble = g.scramble;
    this.plugin = this.knows(g.authPlugin) && g.authPlugin !== 'mysql_clear_password' && !this.refusesSha256(g.authPlugin) ? g.authPlugin : 'mysql_native_password';
    return buildClientHandshake({
      capabilities: this.capabilities,
      mariadbCapabilities: this.mariadbCapabilities,
      maxPacket: this.o.maxPacket,
      charset: this.o.charset,
      user: this.o.user,
      authResponse: this.respond(this.plugin, this.scramble),
      database: this.o.database,
      authPlugin: this.plugin,
      attributes: this.o.attributes ?? {},
    });
  }

  /** The next server packet of the connection phase. */
  onPacket(payload: Buffer): LoginStep {
    const head = payload[0];
    if (head === 0x00) return { kind: 'ok', ok: parseOk(payload) };
    if (head === 0xff) return { kind: 'error', err: parseErr(payload) };
    if (head === 0xfe) {
      const sw = parseAuthSwitch(payload);
      if (!this.knows(sw.plugin)) throw new ProtocolError(`backend asked for unsupported auth plugin ${sw.plugin}`, 'VIGIL_MYSQL_AUTH_PLUGIN');
      if (sw.plugin === 'mysql_clear_password' && !this.o.tls) {
        throw new ProtocolError('backend asked for mysql_clear_password on an unencrypted connection; refusing to send the password', 'VIGIL_MYSQL_AUTH_PLUGIN');
      }
      this.plugin = sw.plugin;
      this.scramble = sw.data;
      this.awaitingPublicKey = false;
      return { kind: 'send', payload: this.respond(sw.plugin, sw.data) };
    }
    if (head === 0x01) return this.moreData(payload.subarray(1));
    throw new ProtocolError(`unexpected packet 0x${(head ?? 0).toString(16)} during backend authentication`, 'VIGIL_MYSQL_MALFORMED');
  }

  private moreData(data: Buffer): LoginStep {
    if (this.plugin === 'caching_sha2_password' || this.plugin === 'sha256_password') {
      if (this.awaitingPublicKey) {
        this.awaitingPublicKey = false;
        return { kind: 'send', payload: rsaEncryptedPassword(this.o.password, this.scramble, data) };
      }
      if (this.plugin === 'caching_sha2_password' && data.length === 1 && data[0] === CACHING_SHA2.FAST_AUTH_SUCCESS) return { kind: 'wait' };
      if (this.plugin === 'caching_sha2_password' && data.length === 1 && data[0] === CACHING_SHA2.PERFORM_FULL_AUTH) return { kind: 'send', payload: this.fullAuth() };
    }
    throw new ProtocolError(`unexpected AuthMoreData for ${this.plugin}`, 'VIGIL_MYSQL_MALFORMED');
  }

  private fullAuth(): Buffer {
    if (this.o.tls) return clearPassword(this.o.password);
    if (this.o.serverPublicKey) return rsaEncryptedPassword(this.o.password, this.scramble, this.o.serverPublicKey);
    return this.requestPublicKey(Buffer.from([CACHING_SHA2.REQUEST_PUBLIC_KEY]));
  }

  private requestPublicKey(request: Buffer): Buffer {
    if (!this.o.allowPublicKeyRetrieval) throw new PublicKeyRetrievalRefused(this.plugin, this.o.targetName);
    this.awaitingPublicKey = true;
    return request;
  }

  /**
   * sha256_password would need the key fetched at once: answer a greeting that offers it as
   * mysql_native_password instead, since the user may well not need it (the server then switches, and
   * only a switch to sha256_password itself is refused).
   */
  private refusesSha256(plugin: string): boolean {
    return plugin === 'sha256_password' && this.o.password !== '' && !this.o.tls && !this.o.serverPublicKey && !this.o.allowPublicKeyRetrieval;
  }

  private knows(plugin: string): boolean {
    return ['mysql_native_password', 'caching_sha2_password', 'sha256_password', 'client_ed25519', 'mysql_clear_password'].includes(plugin);
  }

  private respond(plugin: string, scramble: Buffer): Buffer {
    const pw = this.o.password;
    switch (plugin) {
      case 'mysql_native_password':
        return nativePasswordScramble(pw, scramble);
      case 'caching_sha2_password':
        return cachingSha2Scramble(pw, scramble);
      case 'sha256_password':
        // Empty password: a single NUL. Otherwise ask for full authentication right away.
        if (pw === '') return Buffer.from([0]);
        if (this.o.tls || this.o.serverPublicKey) return this.fullAuth();
        return this.requestPublicKey(Buffer.from([0x01])); // sha256_password's public key request
      case 'client_ed25519':
        return mariadbEd25519Sign(pw, scramble.subarray(0, 32));
      case 'mysql_clear_password':
        return clearPassword(pw);
      default:
        throw new ProtocolError(`unsupported auth plugin ${plugin}`, 'VIGIL_MYSQL_AUTH_PLUGIN');
    }
  }
}
