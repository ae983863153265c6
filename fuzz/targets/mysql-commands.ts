import { decodeStmtExecute, parseCommand } from '../../proxies/mysql/commands.ts';
import { ProtocolError } from '../../src/errors.ts';
import { expectErrors, type FuzzTarget } from '../engine/target.ts';

/** Without and with CLIENT_QUERY_ATTRIBUTES (1 << 27) and CLIENT_DEPRECATE_EOF (1 << 24). */
const CAPS = [0x000fa685, 0x000fa685 | (1 << 27), 0x000fa685 | (1 << 24) | (1 << 27)];

/**
 * Client command payloads (COM_QUERY with and without query attributes, prepared-statement execution
 * with binary parameters, long data, fetch, kill…). The first input byte picks capabilities and the
 * parameter count the statement was prepared with.
 */
export const target: FuzzTarget = {
  name: 'mysql-commands',
  covers: ['proxies/mysql/commands', 'proxies/mysql/wire'],
  maxLen: 2048,
  dictionary: [Buffer.from([0x03]), Buffer.from([0x17]), Buffer.from([0x16]), Buffer.from([0x18]), Buffer.from([0xfc]), Buffer.from([0xfd]), Buffer.from([0xfe]), Buffer.from([0xfb]), Buffer.from([0x0f, 0x00]), Buffer.from([0xfe, 0x00]), Buffer.from([0x08, 0x80])],
  run(data) {
    if (data.length < 2) return;
    const caps = CAPS[data[0] % CAPS.length];
    const numParams = data[1] & 0x1f;
    const payload = data.subarray(2);
    const cmd = expectErrors(() => parseCommand(payload, caps), ProtocolError);
    if (cmd?.kind === 'stmt_execute') {
      const first = expectErrors(() => decodeStmtExecute(payload, numParams, undefined, new Set([1]), caps), ProtocolError);
      // Types sent once are remembered for the following executions.
      expectErrors(() => decodeStmtExecute(payload, numParams, first?.types, new Set(), caps), ProtocolError);
    }
  },
};
