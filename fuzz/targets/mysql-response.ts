import { CommandTracker } from '../../proxies/mysql/tracker.ts';
import type { CommandResponse, ResponseShape } from '../../proxies/mysql/response.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { parseSession } from '../engine/session.ts';

const SHAPES: ResponseShape[] = ['results', 'cursor', 'fetch', 'prepare', 'fieldlist', 'single'];

/**
 * Server responses as the relay follows them (result sets, binary rows, prepare-OK, cursors, field
 * lists), through the command tracker and packet scanner. Session chunks with an even direction are
 * a command sent (its low bits choose the response shape and whether DEPRECATE_EOF was negotiated by
 * the first), odd ones server bytes. Every response completes at most once per command.
 */
export const target: FuzzTarget = {
  name: 'mysql-response',
  covers: ['proxies/mysql/'],
  maxLen: 8192,
  dictionary: [Buffer.from([1, 0, 0, 1, 1]), Buffer.from([5, 0, 0, 2, 0xfe, 0, 0, 2, 0]), Buffer.from([7, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0]), Buffer.from([0xff, 0x28, 0x04, 0x23]), Buffer.from('def\x00'), Buffer.from([0xfb])],
  run(data) {
    const chunks = parseSession(data);
    const deprecateEof = chunks.length > 0 && (chunks[0].bytes[0] ?? 0) & 0x80;
    const responses: CommandResponse[] = [];
    let sent = 0;
    const tracker = new CommandTracker<number>(deprecateEof ? 1 << 24 : 0, { response: (_c, r) => void responses.push(r), local: () => undefined });
    try {
      for (const c of chunks) {
        if (c.dir % 2 === 0) {
          const shape = SHAPES[((c.bytes[0] ?? 0) & 0x7f) % SHAPES.length];
          tracker.sent(shape, shape, 0, sent++);
          if (c.dir === 2) tracker.local(Buffer.from('local'));
        } else {
          tracker.server(c.bytes);
          tracker.progress();
        }
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
    }
    check(responses.length <= sent, `${responses.length} responses to ${sent} commands`);
    for (const r of responses) for (const res of r.results) check(res.rows === undefined || res.rows >= 0, 'negative row count');
    tracker.abandon();
  },
};
