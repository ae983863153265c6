import { decodeBind, decodeCopyFail, decodeExecute, decodeFunctionCall, decodeParse, decodePassword, decodeQuery, decodeStartupPacket, decodeTarget, encodeStartupMessage, F } from '../../proxies/postgres/frontend.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, expectErrors, type FuzzTarget } from '../engine/target.ts';

/** One whole frontend message (as the framer cuts it): decoded by the decoder its type byte selects. */
export const target: FuzzTarget = {
  name: 'pg-frontend',
  covers: ['proxies/postgres/frontend'],
  maxLen: 2048,
  dictionary: ['user\0', 'database\0', 'application_name\0', 'SELECT 1', Buffer.from([0, 3, 0, 0]), Buffer.from([4, 0xd2, 0x16, 0x2f]), Buffer.from([0xff, 0xff, 0xff, 0xff])],
  run(msg) {
    if (msg.length > 0 && msg[0] <= 0x20) {
      // Startup phase: no type byte.
      const p = expectErrors(() => decodeStartupPacket(msg), ProtocolError);
      if (p?.kind === 'startup' && ![...p.params].some(([k, v]) => k.includes('\0') || v.includes('\0') || k === '')) {
        const again = decodeStartupPacket(encodeStartupMessage(p.params, p.version));
        check(again.kind === 'startup' && JSON.stringify([...again.params]) === JSON.stringify([...p.params]), 'startup params do not round-trip');
      }
      return;
    }
    switch (msg[0]) {
      case F.Query: return void expectErrors(() => decodeQuery(msg), ProtocolError);
      case F.Parse: return void expectErrors(() => decodeParse(msg), ProtocolError);
      case F.Bind: return void expectErrors(() => decodeBind(msg), ProtocolError);
      case F.Execute: return void expectErrors(() => decodeExecute(msg), ProtocolError);
      case F.Describe: return void expectErrors(() => decodeTarget(msg, 'Describe'), ProtocolError);
      case F.Close: return void expectErrors(() => decodeTarget(msg, 'Close'), ProtocolError);
      case F.CopyFail: return void expectErrors(() => decodeCopyFail(msg), ProtocolError);
      case F.FunctionCall: return void expectErrors(() => decodeFunctionCall(msg), ProtocolError);
      default: return void expectErrors(() => decodePassword(msg), ProtocolError);
    }
  },
};
