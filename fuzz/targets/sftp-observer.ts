import { SftpObserver, type SftpOperation } from '../../proxies/ssh/sftp/observer.ts';
import { SftpObserveError } from '../../proxies/ssh/sftp/errors.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { parseSession } from '../engine/session.ts';

/** Messages of JavaScript's own failures: the observer reports every error, these mean a bug inside. */
const INTERNAL = /Cannot read|Cannot set|is not a function|is not iterable|out of range|Invalid array length|Maximum call stack|undefined|null/;

/**
 * A whole SFTP session (client and server chunks, engine/session.ts) through the observer the SSH
 * relay uses. Reported errors must be the observer's own, never a JavaScript failure in disguise.
 */
export const target: FuzzTarget = {
  name: 'sftp-observer',
  covers: ['proxies/ssh/sftp/'],
  maxLen: 8192,
  dictionary: [Buffer.from([0, 0, 0, 5, 1, 0, 0, 0, 3]), Buffer.from([0, 0, 0, 5, 2, 0, 0, 0, 3]), Buffer.from([0x65, 0, 0, 0, 1]), Buffer.from([0x66]), Buffer.from([0x67]), Buffer.from([0x68]), 'posix-rename@openssh.com'],
  run(data) {
    const ops: SftpOperation[] = [];
    const errors: SftpObserveError[] = [];
    const o = new SftpObserver({ onOperation: (op) => ops.push(op), onIntent: () => undefined, onError: (e) => errors.push(e), maxPending: 64, maxHandles: 64, maxPacket: 1 << 16, symlinkOrder: data[0] & 1 ? 'draft' : 'openssh' });
    for (const c of parseSession(data)) (c.dir % 2 === 0 ? o.clientData(c.bytes) : o.serverData(c.bytes));
    o.end();
    for (const e of errors) {
      check(e instanceof SftpObserveError, 'reported error of another class');
      check(!INTERNAL.test(e.message), `internal failure reported as a protocol error: ${e.message}`);
    }
    for (const op of ops) check(['ok', 'error', 'incomplete'].includes(op.outcome), 'operation without outcome');
  },
};
