import { buildClientHandshake, buildGreeting, parseAuthSwitch, parseClientHandshake, parseEofStatus, parseErr, parseGreeting, parseOk } from '../../proxies/mysql/handshake.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, expectErrors, type FuzzTarget } from '../engine/target.ts';

const SECURE_CONNECTION = 1 << 15;
const LENENC_AUTH = 1 << 21;

/**
 * Handshake-phase payloads: the server greeting, the client's handshake response (untrusted, before
 * authentication), OK/ERR/EOF and auth-switch. What parses is rebuilt and must parse the same.
 */
export const target: FuzzTarget = {
  name: 'mysql-handshake',
  covers: ['proxies/mysql/handshake', 'proxies/mysql/wire'],
  maxLen: 2048,
  dictionary: ['mysql_native_password\0', 'caching_sha2_password\0', '5.5.5-10.11.6-MariaDB\0', '_client_name', Buffer.from([0x85, 0xa6, 0xff, 0x01]), Buffer.from([0xfc]), Buffer.from([0xfd]), Buffer.from([0xfe])],
  run(data) {
    if (data.length === 0) return;
    const p = data.subarray(1);
    switch (data[0] & 7) {
      case 0: {
        const g = expectErrors(() => parseGreeting(p), ProtocolError);
        if (g && g.scramble.length >= 20 && !g.serverVersion.includes('\0') && !g.authPlugin.includes('\0')) {
          const again = parseGreeting(buildGreeting(g));
          check(again.serverVersion === g.serverVersion && again.connectionId === g.connectionId && again.scramble.equals(g.scramble), 'greeting does not round-trip');
        }
        return;
      }
      case 1: {
        const h = expectErrors(() => parseClientHandshake(p), ProtocolError);
        // The builder writes the auth response length-encoded or with a one-byte length (the forms the
        // gateway logs in with); the pre-4.1 NUL-terminated form is only parsed.
        const buildable = h && (h.capabilities & LENENC_AUTH || (h.capabilities & SECURE_CONNECTION && h.authResponse.length < 256));
        if (h && buildable && !h.sslRequest && !h.user.includes('\0') && !(h.database ?? '').includes('\0') && !(h.authPlugin ?? '').includes('\0')) {
          const again = expectErrors(() => parseClientHandshake(buildClientHandshake(h)), ProtocolError);
          check(again && again.user === h.user && again.authResponse.equals(h.authResponse), `client handshake does not round-trip (${JSON.stringify(h.user)})`);
        }
        return;
      }
      case 2: return void expectErrors(() => parseOk(p), ProtocolError);
      case 3: return void expectErrors(() => parseErr(p), ProtocolError);
      case 4: return void expectErrors(() => parseEofStatus(p), ProtocolError);
      default: return void expectErrors(() => parseAuthSwitch(p), ProtocolError);
    }
  },
};
