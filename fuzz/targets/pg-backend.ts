import { B, commandTag, decodeBackendMessage, errorFields, tagRows } from '../../proxies/postgres/backend.ts';
import { encodeMessage } from '../../proxies/postgres/frontend.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, InvariantError, type FuzzTarget } from '../engine/target.ts';

/** The gateway's own refusal for a message pg-protocol cannot decode. */
const refused = (err: unknown): boolean => err instanceof ProtocolError;

/**
 * One backend message, whole (the framer guarantees the length): type byte + body. Decoded as the relay
 * does: command tags, error fields, and pg-protocol's full decoder. Two messages in a row must not
 * influence each other (the shared parser keeps no leftovers).
 */
export const target: FuzzTarget = {
  name: 'pg-backend',
  covers: ['proxies/postgres/backend', 'pg-protocol'],
  maxLen: 2048,
  dictionary: ['SELECT 1\0', 'INSERT 0 1\0', 'S', 'C', 'M', 'SERROR\0', 'C42601\0', Buffer.from([0, 0]), Buffer.from([0xff, 0xff])],
  run(data) {
    if (data.length === 0) return;
    const msg = encodeMessage(data[0], data.subarray(1));
    try {
      if (data[0] === B.CommandComplete) {
        const tag = commandTag(msg);
        const n = tagRows(tag);
        check(n === undefined || Number.isInteger(n), 'tagRows returned a non-integer');
      }
      if (data[0] === B.ErrorResponse || data[0] === B.NoticeResponse) {
        const f = errorFields(msg);
        check(typeof f.message === 'string' && typeof f.code === 'string', 'error fields are not strings');
      } else decodeBackendMessage(msg);
    } catch (err) {
      if (err instanceof InvariantError || !refused(err)) throw err;
    }
    // Whatever came before, a well-formed ReadyForQuery decodes as itself.
    const rfq = decodeBackendMessage(encodeMessage(B.ReadyForQuery, Buffer.from('I')));
    check(rfq.name === 'readyForQuery', `parser state leaked from the previous message: got ${rfq.name}`);
  },
};
