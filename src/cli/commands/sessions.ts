import type { Command, CommandArgs } from '../command.ts';
import { stringOpt, UsageError } from '../command.ts';
import { GATEWAY_API_OPTIONS, gatewayApi } from '../api-client.ts';
import { escapeTerminal } from '../../../recorder/audit/index.ts';
import { TerminalSafeFilter } from '../../../recorder/recordings/terminal-safe.ts';

/** `vigil sessions list|kill` and `vigil watch`: live sessions of a running gateway, through its API. */

interface SessionRow {
  id: string;
  protocol: string;
  user: string;
  target: { name: string; login?: string; database?: string };
  source: { ip: string };
  started_at: string;
  bytes_from_client: number;
  bytes_to_client: number;
  statements: number;
  /** Replicas on a shared store: the replica holding the session. */
  replica?: string;
}

function bytes(n: number): string {
  return n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function printTable(args: CommandArgs, rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) args.out.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ') + '\n');
}

/**
 * `vigil sessions list --live` (the command itself lives in replay.ts with the recorded-sessions listing):
 * the gateway's live sessions with their byte counts, through its API.
 */
export async function listLiveSessions(args: CommandArgs): Promise<number> {
  const { sessions, partial } = await gatewayApi(args).call<{ sessions: SessionRow[]; partial?: boolean }>('GET', '/v1/sessions?live=1');
  // The state store was unavailable: only the sessions of the replica that answered are listed.
  if (partial) args.err.write('warning: the state store is unavailable; only the live sessions of the replica that answered are listed\n');
  if (args.values.json) {
    for (const s of sessions) args.out.write(JSON.stringify(s) + '\n');
    return 0;
  }
  if (sessions.length === 0) {
    args.out.write('No live sessions.\n');
    return 0;
  }
  const replicas = sessions.some((s) => s.replica !== undefined);
  const rows = [['SESSION', 'START', 'USER', 'TARGET', 'PROTOCOL', 'SOURCE', 'IN', 'OUT', 'STATEMENTS', ...(replicas ? ['REPLICA'] : [])]];
  for (const s of sessions) {
    const target = s.target.name + (s.target.login ? ` (${s.target.login}${s.target.database ? `/${s.target.database}` : ''})` : '');
    const row = [s.id, s.started_at, s.user, target, s.protocol, s.source.ip, bytes(s.bytes_from_client), bytes(s.bytes_to_client), String(s.statements), ...(replicas ? [s.replica ?? ''] : [])];
    rows.push(row.map((c) => escapeTerminal(c)));
  }
  printTable(args, rows);
  return 0;
}

export const sessionsKillCommand: Command = {
  name: 'sessions kill',
  summary: 'End a live session now (admins only): the client is told "terminated by <you>: <reason>" in its own protocol.',
  usage: 'ID --reason TEXT --api URL --cert F --key F --ca F [--json]',
  options: { reason: { type: 'string', arg: 'TEXT', help: 'why (required; shown to the user and recorded in session.kill)' }, ...GATEWAY_API_OPTIONS, json: { type: 'boolean' } },
  positionals: true,
  examples: ['sessions kill 01JD5QX8N2V3K4W5Y6Z7A8B9C0 --reason "INC-1234: runaway migration"'],
  async run(args) {
    const [id, ...extra] = args.positionals;
    if (!id || extra.length) throw new UsageError('exactly one session ID is required');
    const reason = stringOpt(args.values, 'reason')?.trim();
    if (!reason) throw new UsageError('--reason is required');
    const r = await gatewayApi(args).call<{ killed: SessionRow; ended: boolean }>('POST', `/v1/sessions/${encodeURIComponent(id)}/kill`, { reason });
    if (args.values.json) args.out.write(JSON.stringify(r) + '\n');
    else args.out.write(`killed session ${id} (${r.killed.user} on ${r.killed.target.name}, ${r.killed.protocol})${r.ended ? '' : '; it is still closing'}\n`);
    return 0;
  },
};

interface WatchMessage {
  type: string;
  session?: SessionRow;
  mode?: string;
  from?: string;
  channel?: number;
  events?: [number, string, unknown][];
  event?: { time: string; outcome: string; type: string; details: Record<string, unknown> };
  reason?: unknown;
}

export const watchCommand: Command = {
  name: 'watch',
  summary: 'Watch a live session read-only (admins and auditors): an SSH terminal mirrored into yours, a database session as its statements.',
  usage:
    'SESSION [--from-now] [--raw] --api URL --cert F --key F --ca F [--json]\n\n' +
    'Terminal sessions are shown from their start (what is recorded so far, then live) unless --from-now. Nothing you type\n' +
    'reaches the session. Watching is recorded (session.watch_started / session.watch_ended). Stop with Ctrl-C.\n' +
    'Terminal output is filtered as by `vigil replay`: clipboard writes, titles and queries your terminal would answer into\n' +
    'your input are dropped; --raw mirrors the bytes unfiltered (only into a terminal you trust it with).',
  options: {
    'from-now': { type: 'boolean', help: 'only what happens from now on (default: replay the session from its start first)' },
    raw: { type: 'boolean', help: 'terminal output exactly as recorded, escape sequences unfiltered (see above)' },
    ...GATEWAY_API_OPTIONS,
    json: { type: 'boolean', help: 'print the watch messages as they arrive (one JSON object per line) instead of rendering them' },
  },
  positionals: true,
  examples: ['watch 01JD5QX8N2V3K4W5Y6Z7A8B9C0', 'watch 01JD5QX8N2V3K4W5Y6Z7A8B9C0 --from-now'],
  async run(args) {
    const [id, ...extra] = args.positionals;
    if (!id || extra.length) throw new UsageError('exactly one SESSION id is required');
    const from = args.values['from-now'] ? '?from=now' : '';
    const ws = await gatewayApi(args).socket(`/v1/sessions/${encodeURIComponent(id)}/watch${from}`);
    const stop = () => ws.close(1000);
    process.once('SIGINT', stop);
    // The watched session controls what it prints: it must not drive this terminal (see terminal-safe.ts).
    const screen = args.values.raw === true ? undefined : new TerminalSafeFilter();
    try {
      return await new Promise<number>((resolve) => {
        let ended: unknown;
        ws.on('message', (data) => {
          const text = data.toString();
          if (args.values.json) {
            args.out.write(text + '\n');
            const m = JSON.parse(text) as WatchMessage;
            if (m.type === 'end') ended = m.reason;
            return;
          }
          const m = JSON.parse(text) as WatchMessage;
          if (m.type === 'session' && m.session) {
            args.err.write(`vigil: watching ${m.session.user} on ${m.session.target.name} (${m.session.protocol}, session ${m.session.id}) from ${m.from}; read-only, Ctrl-C to stop\r\n`);
          } else if (m.type === 'cast') {
            // Terminal output as recorded, made safe unless --raw; input, resizes and NUL-run markers are not screen output.
            for (const [, code, d] of m.events ?? []) if (code === 'o' && typeof d === 'string') args.out.write(screen ? screen.write(d) : d);
          } else if (m.type === 'statement' && m.event) {
            const d = m.event.details;
            const sql = String(d.sql ?? d.query ?? d.command ?? '').replace(/\s+/g, ' ');
            const state = m.event.type === 'db.query.start' ? 'running' : m.event.outcome;
            const rows = typeof d.rows === 'number' ? ` ${d.rows} rows` : '';
            args.out.write(escapeTerminal(`${m.event.time} ${state}${rows} ${sql}`) + '\n');
          } else if (m.type === 'end') ended = m.reason;
        });
        ws.on('close', () => {
          if (screen) args.out.write(screen.end());
          if (!args.values.json) args.err.write(ended !== undefined ? `\r\nvigil: the session ended (${String(ended)})\r\n` : '\r\nvigil: stopped watching\r\n');
          resolve(0);
        });
        ws.on('error', () => resolve(1));
      });
    } finally {
      process.off('SIGINT', stop);
    }
  },
};

export const SESSION_COMMANDS: Command[] = [sessionsKillCommand, watchCommand];
