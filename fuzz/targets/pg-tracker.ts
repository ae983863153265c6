import { MessageFramer } from '../../proxies/postgres/framing.ts';
import { backendNeedsBody, frontendNeedsBody, QueryTracker, type QueryRecord } from '../../proxies/postgres/tracker.ts';
import { ProtocolError } from '../../src/errors.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { parseSession } from '../engine/session.ts';

/**
 * A whole relayed session after startup (see engine/session.ts): client chunks (direction 0) and server
 * chunks (1), framed as the connection frames them and fed to the query tracker. A ProtocolError ends
 * the session as it ends the connection; every statement forwarded is written exactly once.
 */
export const target: FuzzTarget = {
  name: 'pg-tracker',
  covers: ['proxies/postgres/'],
  maxLen: 8192,
  dictionary: ['SELECT 1;', "'", '$$', 'E\'', '--', '/*', Buffer.from('SELECT 1\0'), Buffer.from([0x5a, 0, 0, 0, 5, 0x49]), Buffer.from([0x43, 0, 0, 0, 13]), Buffer.from([0x45, 0, 0, 0])],
  run(data) {
    const records: QueryRecord[] = [];
    const tracker = new QueryTracker({ redact: /password|secret/i, onRecord: (r) => records.push(r), onStart: () => undefined });
    const fe = new MessageFramer({ maxLength: 1 << 16, headerOnly: (t) => !frontendNeedsBody(t) });
    const be = new MessageFramer({ maxLength: 1 << 16, headerOnly: (t) => !backendNeedsBody(t) });
    let now = 0;
    let forwardedStatements = 0;
    try {
      for (const c of parseSession(data)) {
        now += 1;
        if (c.dir % 2 === 0) {
          fe.push(c.bytes, (type, msg, length) => tracker.frontend(type, msg, length, now));
          forwardedStatements += tracker.statementsToForward;
          tracker.startsToForward();
          tracker.forwarded(c.dir === 2, now);
        } else {
          be.push(c.bytes, (type, msg, length) => tracker.backend(type, msg, length, now));
        }
        tracker.announceDue(now, 5);
      }
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      tracker.discardUnforwarded();
    }
    tracker.abandon('fuzz', now + 1);
    check(tracker.pending === 0 || records.length <= forwardedStatements + tracker.pending, 'more records than statements');
    for (const r of records) check(r.rowsReturned >= 0 && Number.isFinite(r.durationMs), 'record with impossible figures');
  },
};
