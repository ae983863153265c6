import { stringOpt, UsageError, type Command } from '../command.ts';
import { NotFoundError } from '../../errors.ts';
import { searchAuditLog, escapeTerminal } from '../../../recorder/audit/index.ts';
import { dataPaths } from '../../data-dir.ts';
import { openConfiguredRecordings } from '../../../recorder/recordings/storage.ts';
import { auditPaths, parseTimeArg } from './audit.ts';
import { recordingStorageFromArgs } from '../data-dir-arg.ts';
import { GATEWAY_API_OPTIONS } from '../api-client.ts';
import { listLiveSessions } from './sessions.ts';
import type { RecordingDigest } from '../../../recorder/recordings/replay.ts';

function numberOpt(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag}: expected a positive number, got ${JSON.stringify(text)}`);
  return n;
}

interface SessionRow {
  id: string;
  start?: string;
  end?: string;
  user: string;
  target: string;
  protocol: string;
  reason?: string;
  outcome?: string;
}

export const sessionsListCommand: Command = {
  name: 'sessions list',
  summary: 'List recorded sessions (from session.start / session.end audit events); --live: the live sessions of a running gateway, with bytes so far.',
  usage: '[--user U] [--target T] [--since 2h|ISO] [--json]\n       --live --api URL --cert F --key F --ca F [--json]',
  options: {
    live: { type: 'boolean', help: 'live sessions of a running gateway (through its API), with bytes each way' },
    ...GATEWAY_API_OPTIONS,
    user: { type: 'string', arg: 'U', help: 'only sessions of this user' },
    target: { type: 'string', arg: 'T', help: 'only sessions on this target' },
    since: { type: 'string', arg: '2h|ISO', help: 'only sessions started this long ago or since this time' },
    json: { type: 'boolean' },
  },
  examples: ['sessions list --user alice --since 1d', 'sessions list --target prod-pg --json', 'sessions list --live --api https://vigil:8443 --cert me.crt --key me.key --ca ca.crt'],
  async run(args) {
    if (args.values.live) return listLiveSessions(args);
    const p = await auditPaths(args);
    const { records } = await searchAuditLog(p.auditDir, {
      type: 'session.',
      user: stringOpt(args.values, 'user'),
      target: stringOpt(args.values, 'target'),
      since: parseTimeArg('since', stringOpt(args.values, 'since')),
    });
    const rows = new Map<string, SessionRow>();
    for (const { event: e } of records) {
      if (!e.session_id) continue;
      let row = rows.get(e.session_id);
      if (!row) {
        row = { id: e.session_id, user: e.actor?.user ?? '-', target: e.target?.name ?? '-', protocol: e.target?.protocol ?? '-' };
        rows.set(e.session_id, row);
      }
      if (e.type === 'session.start') row.start = e.time;
      if (e.type === 'session.end') {
        row.end = e.time;
        row.outcome = e.outcome;
        row.reason = typeof e.details?.reason === 'string' ? e.details.reason : undefined;
      }
    }
    if (args.values.json === true) {
      for (const r of rows.values()) args.out.write(JSON.stringify(r) + '\n');
      return 0;
    }
    const table = [['SESSION', 'START', 'END', 'USER', 'TARGET', 'PROTOCOL', 'END REASON']];
    for (const r of rows.values()) table.push([r.id, r.start ?? '-', r.end ?? '(live)', r.user, r.target, r.protocol, r.reason ?? '-'].map((c) => escapeTerminal(c)));
    const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
    for (const row of table) args.out.write(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n');
    return 0;
  },
};

export const replayCommand: Command = {
  name: 'replay',
  withoutProxies: true,
  summary:
    'Replay a session: SSH plays its terminal recording with the original timing (--print: its text); ' +
    'PostgreSQL/MySQL prints the statement transcript with timing, parameters, outcome and rows (--json: one JSON object per line).',
  usage:
    'SESSION_ID [--speed 2] [--idle-limit 2] [--channel N] [--print] [--raw] [--json]\n\n' +
    'SSH output is filtered for your terminal: text, colours, cursor movement, erasing and the alternate screen pass; clipboard\n' +
    'writes, titles and other OSC/DCS/APC strings, and every query that would make your terminal answer into your input\n' +
    '(DA, DSR, window reports, …) are dropped. At the end, or on Ctrl-C (exit 130), what the recording left set is undone\n' +
    '(alternate screen, cursor, colours, scroll region, autowrap, keypad, charset). --raw plays the bytes exactly as\n' +
    'recorded: only into a terminal you trust it with. --print shows bidi controls and line separators as \\uXXXX.\n' +
    '--print shows the scrollback and the final screen, and before them what the session erased on the way (screen or\n' +
    'scrollback cleared, terminal reset, the last screen of each full-screen program), each followed by a [vigil: …] line;\n' +
    'a line overwritten in place (cursor up, erase line) shows only as it ended.\n' +
    'The recording is checked as it is read: a damaged line is an error naming it (only an incomplete last line, of a\n' +
    'recording still being written, is passed over), and its SHA-256 is compared with the one the audit log holds: what\n' +
    'recording.closed logged when the gateway closed the file (a local copy), or recording.stored when it was uploaded\n' +
    '(object storage); stderr says whether it was verified; a mismatch exits 1, after playing; --print prints nothing then.',
  positionals: true,
  options: {
    speed: { type: 'string', arg: 'X', help: 'play X times faster (default 1)' },
    'idle-limit': { type: 'string', arg: 'SECONDS', help: 'shorten pauses longer than this' },
    channel: { type: 'string', arg: 'N', help: 'SSH: which channel of the session to play (default: the first shell)' },
    print: { type: 'boolean', help: 'SSH: print the text (scrollback, final screen, and what was erased on the way) instead of playing' },
    raw: { type: 'boolean', help: 'SSH: play the recorded bytes unfiltered, escape sequences included (see above)' },
    json: { type: 'boolean', help: 'databases: one JSON object per statement' },
  },
  examples: ['replay 01HV40C7Y1 --speed 4 --idle-limit 2', 'replay 01HV41QX2M --json'],
  async run(args) {
    const sessionId = args.positionals[0];
    if (!sessionId || args.positionals.length > 1) throw new UsageError('expected exactly one SESSION_ID');
    const { dataDir, auditDir } = await auditPaths(args);
    // Loaded here: the player brings a headless terminal, which no other command needs at start.
    const { streamAsciicast, playAsciicast, renderFinalText, buildTranscript, formatTranscript, RecordingIntegrityError } = await import('../../../recorder/recordings/replay.ts');
    // Local files, or object storage (recording.storage): read as a stream either way, never whole.
    const store = await openConfiguredRecordings(dataPaths(dataDir).recordings, await recordingStorageFromArgs(args));
    let ids = await store.list(sessionId);
    if (ids.length === 0) {
      // A database session has no terminal recording: its statements are in the audit log.
      const { records } = await searchAuditLog(auditDir, { session: sessionId });
      const transcript = buildTranscript(sessionId, records.map((r) => r.event));
      if (transcript) {
        if (args.values.json === true) {
          args.out.write(JSON.stringify({ kind: 'session', ...transcript.session }) + '\n');
          for (const e of transcript.entries) args.out.write(JSON.stringify(e) + '\n');
        } else {
          args.out.write(formatTranscript(transcript));
        }
        return 0;
      }
    }
    if (args.values.json === true) throw new UsageError('--json is for database sessions (an SSH recording is asciicast, JSON lines already)');
    const channel = stringOpt(args.values, 'channel');
    if (channel !== undefined) {
      if (!/^\d+$/.test(channel)) throw new UsageError(`--channel: expected a channel number, got ${JSON.stringify(channel)}`);
      ids = ids.filter((id) => id.endsWith(`/ch${Number(channel)}.cast`));
    }
    if (ids.length === 0) {
      throw new NotFoundError(`no recording for session ${escapeTerminal(sessionId)}${channel !== undefined ? ` channel ${channel}` : ''} in ${dataDir}`);
    }
    const speed = numberOpt('speed', stringOpt(args.values, 'speed'));
    const idleLimit = numberOpt('idle-limit', stringOpt(args.values, 'idle-limit'));
    const logged = await loggedHashes(auditDir, sessionId);
    // Ctrl-C (or a TERM) stops playing instead of killing the process, so the player can still undo what the
    // recording left set in this terminal (alternate screen, hidden cursor, colours, scroll region).
    const interrupt = new AbortController();
    const stop = () => interrupt.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      for (const id of ids) {
        if (interrupt.signal.aborted) break;
        const source = await store.open(id);
        if (!source) throw new NotFoundError(`recording ${escapeTerminal(id)} is gone`);
        const reference = referenceHash(logged.get(id), source.where.kind);
        const named = (e: unknown) => (e instanceof RecordingIntegrityError ? new RecordingIntegrityError(`recording ${escapeTerminal(id)}: ${e.message}`) : e);
        const cast = await streamAsciicast(source.read()).catch((e) => Promise.reject(named(e)));
        if (ids.length > 1) (args.values.print ? args.out : args.err).write(`── ${id} ──\n`);
        if (args.values.print) {
          const text = await renderFinalText(cast).catch((e) => Promise.reject(named(e)));
          // Checked before printing: text that does not match what was stored is not shown as the session.
          checkLogged(id, cast.digest, reference, args.err, RecordingIntegrityError);
          args.out.write(text + '\n');
        } else {
          await playAsciicast(cast, args.out, { speed, idleLimit, raw: args.values.raw === true, signal: interrupt.signal }).catch((e) => Promise.reject(named(e)));
          checkLogged(id, cast.digest, reference, args.err, RecordingIntegrityError);
        }
      }
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      await store.close?.(0);
    }
    if (interrupt.signal.aborted) {
      args.err.write('\nvigil: replay interrupted\n');
      return 130;
    }
    return 0;
  },
};

/** A hash the audit log holds for a recording: what its upload (recording.stored) or the gateway closing
 *  the file (recording.closed) logged. */
interface LoggedHash {
  type: 'recording.stored' | 'recording.closed';
  seq: number;
  sha256: string;
  bytes: number;
}

/** The latest `recording.stored` and `recording.closed` of each recording of the session. */
async function loggedHashes(auditDir: string, sessionId: string): Promise<Map<string, { stored?: LoggedHash; closed?: LoggedHash }>> {
  const out = new Map<string, { stored?: LoggedHash; closed?: LoggedHash }>();
  const { records } = await searchAuditLog(auditDir, { session: sessionId, type: 'recording.' });
  for (const r of records) {
    const d = r.event.details ?? {};
    const type = r.event.type;
    if ((type !== 'recording.stored' && type !== 'recording.closed') || typeof d.recording !== 'string' || typeof d.sha256 !== 'string') continue;
    const logged = out.get(d.recording) ?? {};
    logged[type === 'recording.stored' ? 'stored' : 'closed'] = { type, seq: r.seq, sha256: d.sha256, bytes: Number(d.bytes) };
    out.set(d.recording, logged);
  }
  return out;
}

/**
 * The hash to check a recording against: both events when they agree name the same bytes (recording.stored
 * is shown); otherwise the one describing the copy read — the file the gateway closed for a local copy, the
 * uploaded object for one read from object storage — or whichever exists.
 */
function referenceHash(logged: { stored?: LoggedHash; closed?: LoggedHash } | undefined, readFrom: 'local' | 's3'): LoggedHash | undefined {
  const { stored, closed } = logged ?? {};
  if (stored && closed && stored.sha256 !== closed.sha256) return readFrom === 'local' ? closed : stored;
  return stored ?? closed;
}

/** Say on stderr whether the bytes read are those the audit log holds a hash of; a mismatch is an error. */
function checkLogged(
  id: string,
  digest: RecordingDigest | undefined,
  logged: LoggedHash | undefined,
  err: NodeJS.WritableStream,
  IntegrityError: new (message: string) => Error,
): void {
  const name = escapeTerminal(id);
  if (!digest) return; // playing stopped before the end (interrupted): nothing read to compare
  if (digest.partialLastLine) err.write(`vigil: ${name}: its last line is incomplete (still being written, or cut short) and was left out\n`);
  if (!logged) {
    err.write(`vigil: ${name}: not verified: no recording.stored event and no recording.closed (still being written, or the gateway stopped before closing it)\n`);
    return;
  }
  const what = logged.type === 'recording.stored' ? 'it was stored' : 'the gateway closed it';
  if (logged.sha256 !== digest.sha256) {
    throw new IntegrityError(
      `recording ${name} does not match the SHA-256 its ${logged.type} event (seq ${logged.seq}) logged: ` +
        `logged ${logged.sha256} (${logged.bytes} bytes), read ${digest.sha256} (${digest.bytes} bytes); it was altered or replaced after ${what}`,
    );
  }
  err.write(`vigil: ${name}: verified: matches the SHA-256 its ${logged.type} event (seq ${logged.seq}) logged (${digest.bytes} bytes)\n`);
}

export const REPLAY_COMMANDS: Command[] = [sessionsListCommand, replayCommand];
