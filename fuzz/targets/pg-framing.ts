import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, chunksAt, expectErrors, splitPoints, type FuzzTarget } from '../engine/target.ts';

type Msg = [number, string | undefined, number];

function frame(data: Buffer, untyped: boolean, chunks: Buffer[]): { msgs: Msg[]; error?: string } {
  const f = new MessageFramer({ maxLength: 1 << 16, untyped, headerOnly: (t) => t === 0x44 });
  const msgs: Msg[] = [];
  let error: string | undefined;
  try {
    for (const c of chunks) f.push(c, (type, msg, length) => msgs.push([type, msg?.toString('hex'), length]));
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    error = err.code;
  }
  return { msgs, error };
}

export const target: FuzzTarget = {
  name: 'pg-framing',
  covers: ['proxies/postgres/framing'],
  maxLen: 2048,
  dictionary: [Buffer.from([0, 0, 0, 8]), Buffer.from([0x51, 0, 0, 0, 5]), Buffer.from([0x44, 0, 0, 0, 4]), Buffer.from([4, 0xd2, 0x16, 0x2f])],
  run(data) {
    const untyped = data.length > 0 && (data[0] & 1) === 1;
    const body = data.subarray(1);
    const whole = frame(body, untyped, [body]);
    for (const p of splitPoints(body.length, 8)) {
      const split = frame(body, untyped, chunksAt(body, [p, Math.floor(p / 2)]));
      check(JSON.stringify(split) === JSON.stringify(whole), `framing differs when split at ${p}`);
    }
    expectErrors(() => undefined, ProtocolError);
  },
};
