import { parseScpCommand, ScpObserver, ScpObserveError, type ScpTransfer } from '../../proxies/ssh/scp/index.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { parseSession } from '../engine/session.ts';

const INTERNAL = /Cannot read|Cannot set|is not a function|is not iterable|out of range|Invalid array length|Maximum call stack|undefined|null/;

/**
 * The legacy scp protocol (`scp -O`): the exec command line, then both directions of the transfer
 * through the observer. The observer turns any failure into ScpObserveError; one that carries a
 * JavaScript failure message is a bug in disguise.
 */
export const target: FuzzTarget = {
  name: 'scp',
  covers: ['proxies/ssh/scp/'],
  maxLen: 8192,
  dictionary: ['C0644 ', 'D0755 0 ', 'E\n', 'T1700000000 0 1700000000 0\n', '\0', '\x01', '\x02', 'scp -t ', 'scp -f ', 'scp -r -t ', ' -- ', "'", '"'],
  run(data) {
    const nl = data.indexOf(0x0a);
    const commandLine = (nl < 0 ? data : data.subarray(0, nl)).toString('utf8');
    const parsed = parseScpCommand(commandLine);
    const command = parsed ?? { direction: data[0] & 1 ? 'download' : 'upload', recursive: (data[0] & 2) !== 0, paths: ['x'] } as const;
    const transfers: ScpTransfer[] = [];
    const errors: ScpObserveError[] = [];
    const o = new ScpObserver({ command, onTransfer: (t) => transfers.push(t), onError: (e) => errors.push(e) });
    for (const c of parseSession(nl < 0 ? Buffer.alloc(0) : data.subarray(nl + 1))) (c.dir % 2 === 0 ? o.clientData(c.bytes) : o.serverData(c.bytes));
    o.end();
    for (const e of errors) check(!INTERNAL.test(e.message), `internal failure reported as a protocol error: ${e.message}`);
    check(transfers.length < 10_000, 'more transfers than the input could describe');
  },
};
