import { stringOpt, UsageError, type Command } from '../command.ts';
import { NotFoundError } from '../../errors.ts';
import { searchAuditLog, escapeTerminal } from '../../../recorder/audit/index.ts';
import { dataPaths } from '../../data-dir.ts';
import { openConfiguredRecordings } from '../../../recorder/recordings/storage.ts';
import { auditPaths, parseTimeArg } from './audit.ts';
import { recordingStorageFromArgs } from '../data-dir-arg.ts';
import { GATEWAY_API_OPTIONS } from '../api-client.ts';
import { listLiveSessions } from './sessions.ts';

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
    'Replay a session: SSH plays its terminal recording with the original timing (--print: the final screen text); ' +
    'PostgreSQL/MySQL prints the statement transcript with timing, parameters, outcome and rows (--json: one JSON object per line).',
  usage: 'SESSION_ID [--speed 2] [--idle-limit 2] [--channel N] [--print] [--json]',
  positionals: true,
  options: {
    speed: { type: 'string', arg: 'X', help: 'play X times faster (default 1)' },
    'idle-limit': { type: 'string', arg: 'SECONDS', help: 'shorten pauses longer than this' },
    channel: { type: 'string', arg: 'N', help: 'SSH: which channel of the session to play (default: the first shell)' },
    print: { type: 'boolean', help: 'SSH: print the final screen text instead of playing' },
    json: { type: 'boolean', help: 'databases: one JSON object per statement' },
  },
  examples: ['replay 01HV40C7Y1 --speed 4 --idle-limit 2', 'replay 01HV41QX2M --json'],
  async run(args) {
    const sessionId = args.positionals[0];
    if (!sessionId || args.positionals.length > 1) throw new UsageError('expected exactly one SESSION_ID');
    const { dataDir, auditDir } = await auditPaths(args);
    // Loaded here: the player brings a headless terminal, which no other command needs at start.
    const { streamAsciicast, playAsciicast, renderFinalText, buildTranscript, formatTranscript } = await import('../../../recorder/recordings/replay.ts');
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
    try {
      for (const id of ids) {
        const source = await store.open(id);
        if (!source) throw new NotFoundError(`recording ${escapeTerminal(id)} is gone`);
        const cast = await streamAsciicast(source.read());
        if (ids.length > 1) (args.values.print ? args.out : args.err).write(`── ${id} ──\n`);
        if (args.values.print) {
          args.out.write((await renderFinalText(cast)) + '\n');
        } else {
          await playAsciicast(cast, args.out, { speed, idleLimit });
        }
      }
    } finally {
      await store.close?.(0);
    }
    return 0;
  },
};

export const REPLAY_COMMANDS: Command[] = [sessionsListCommand, replayCommand];
