import os from 'node:os';
import { UsageError, requireOpt, stringOpt, type Command, type CommandArgs } from '../command.ts';
import { loadFromArgs, localUser, openLocal, requireExistingDataDir, type LocalContext } from '../context.ts';
import { parseTimeArg } from './audit.ts';
import { dataPaths } from '../../data-dir.ts';
import { newId } from '../../ids.ts';
import { NotFoundError } from '../../errors.ts';
import { openStateStore } from '../../store/index.ts';
import type { HoldRecord } from '../../store/types.ts';
import type { EventBus } from '../../events/bus.ts';
import { VERIFY_EXIT_CODES } from '../../../recorder/audit/index.ts';
import { retentionPolicy, activeHolds } from '../../gateway/retention.ts';
import { runPurge } from '../../../recorder/retention/run.ts';
import { openConfiguredRecordings } from '../../../recorder/recordings/storage.ts';

const actorOf = (by: string | undefined) => ({ user: by ?? localUser(), roles: [] as string[] });
const sourceOf = () => ({ ip: 'local', via: `cli:${localUser()}@${os.hostname()}` });

function holdEvent(events: EventBus, type: 'hold.added' | 'hold.released', by: string | undefined, hold: HoldRecord, details: Record<string, unknown>) {
  return events.emit({ type, outcome: 'success', actor: actorOf(by), source: sourceOf(), target: { name: `hold/${hold.id}`, protocol: 'vigil' }, details });
}

function describeHold(h: HoldRecord): Record<string, unknown> {
  const out: Record<string, unknown> = { hold_id: h.id, reason: h.reason };
  for (const k of ['user', 'target', 'session', 'since', 'until'] as const) if (h[k] !== undefined) out[k] = h[k];
  return out;
}

export const auditPurgeCommand: Command = {
  name: 'audit purge',
  summary: 'Remove audit segments (and recordings) past their retention, never below retention.floor nor under a legal hold; the kept log still verifies.',
  usage: '[--dry-run] [--reason TEXT] [--by NAME]',
  options: {
    'dry-run': { type: 'boolean', help: 'only say what would be removed' },
    reason: { type: 'string', arg: 'TEXT', help: 'recorded with the purge event' },
    by: { type: 'string', arg: 'NAME', help: 'who purges, for the audit event (default: the OS user)' },
  },
  examples: ['audit purge --dry-run', 'audit purge --reason "quarterly retention run"'],
  async run(args) {
    const { config, dataDir } = loadFromArgs(args);
    const paths = dataPaths(dataDir);
    const dryRun = args.values['dry-run'] === true;
    let ctx: LocalContext | undefined;
    // Recordings in object storage are purged too (listing them needs the configured credentials).
    const stored = config.recording.storage.kind === 's3' ? await openConfiguredRecordings(paths.recordings, config.recording.storage) : undefined;
    try {
      const res = await runPurge({
        remote: stored?.remote,
        auditDir: paths.audit,
        recordingsDir: paths.recordings,
        publicKeyFile: paths.auditPublicKey,
        policy: retentionPolicy(config),
        reason: stringOpt(args.values, 'reason') ?? 'retention',
        dryRun,
        holds: async () => {
          const store = await openStateStore(dataDir, config.store);
          try {
            return activeHolds(await store.listHolds());
          } finally {
            await store.close();
          }
        },
        // The writer (or the spool of a running gateway) is opened only when there is something to record.
        record: async (details) => {
          ctx = await openLocal(args);
          return ctx.events.emit({ type: 'audit.purged', outcome: 'success', actor: actorOf(stringOpt(args.values, 'by')), source: ctx.source, target: { name: 'audit', protocol: 'vigil' }, details });
        },
      });
      if (res.status === 'refused') {
        args.err.write(`audit purge refused: the log does not verify (${res.problem}); run vigil audit verify\n`);
        return VERIFY_EXIT_CODES.invalid;
      }
      const { entry, plan, recordings } = res;
      const verb = dryRun ? 'would purge' : 'purged';
      if (entry) args.out.write(`${verb} ${entry.segments.length} segment(s): seq ${entry.first_seq}..${entry.last_seq}, ${entry.min_time} .. ${entry.max_time}\n`);
      else args.out.write('no audit segment is past its retention\n');
      if (plan.keptBecause) args.out.write(`kept from: ${plan.keptBecause}\n`);
      if (recordings.sessions.length) args.out.write(`${verb} the recordings of ${recordings.sessions.length} session(s)\n`);
      if (recordings.remote?.length) args.out.write(`${verb} the recordings of ${recordings.remote.length} session(s) in ${stored?.remote?.location}\n`);
      if (recordings.remoteError) {
        args.err.write(`audit purge: could not list the recordings in ${stored?.remote?.location} (${recordings.remoteError}); they are left for the next run\n`);
        return 1;
      }
      return 0;
    } finally {
      await ctx?.close();
      await stored?.close?.(0);
    }
  },
};

export const holdAddCommand: Command = {
  name: 'hold add',
  summary: 'Place a legal hold: events and recordings matching it are never purged until it is released.',
  usage: '--reason TEXT [--user U] [--target T] [--session ID] [--since 2h|ISO] [--until 2h|ISO] [--by NAME]',
  options: {
    user: { type: 'string', arg: 'U', help: 'hold events of this user' },
    target: { type: 'string', arg: 'T', help: 'hold events on this target' },
    session: { type: 'string', arg: 'ID', help: 'hold this session' },
    since: { type: 'string', arg: '2h|ISO', help: 'hold events from this long ago or this time on' },
    until: { type: 'string', arg: '2h|ISO', help: 'hold events up to this long ago or this time' },
    reason: { type: 'string', arg: 'TEXT', help: 'why, e.g. the case reference (required; recorded)' },
    by: { type: 'string', arg: 'NAME', help: 'who places the hold, for the audit event (default: the OS user)' },
  },
  examples: ['hold add --user alice --since 2026-01-01T00:00:00Z --reason "case 2026-17"'],
  async run(args) {
    const v = args.values;
    const reason = requireOpt(v, 'reason');
    const hold: HoldRecord = { id: newId(), reason, by: stringOpt(v, 'by') ?? localUser(), createdAt: new Date().toISOString() };
    for (const k of ['user', 'target', 'session'] as const) {
      const x = stringOpt(v, k);
      if (x !== undefined) hold[k] = x;
    }
    for (const k of ['since', 'until'] as const) {
      const d = parseTimeArg(k, stringOpt(v, k));
      if (d) hold[k] = d.toISOString();
    }
    if (!hold.user && !hold.target && !hold.session && !hold.since && !hold.until) {
      throw new UsageError('a hold needs at least one of --user, --target, --session, --since, --until');
    }
    const ctx = await openLocal(args);
    try {
      // Stored before it is recorded: if recording fails, the hold still protects (keeping too much is safe).
      await ctx.store.putHold(hold);
      await holdEvent(ctx.events, 'hold.added', stringOpt(v, 'by'), hold, describeHold(hold));
    } finally {
      await ctx.close();
    }
    args.out.write(`${hold.id}\n`);
    return 0;
  },
};

export const holdListCommand: Command = {
  name: 'hold list',
  summary: 'List legal holds (active ones; --all includes released).',
  usage: '[--all] [--json]',
  options: { all: { type: 'boolean', help: 'include released holds' }, json: { type: 'boolean' } },
  examples: ['hold list --all --json'],
  async run(args) {
    const { config, dataDir } = loadFromArgs(args);
    requireExistingDataDir(dataDir);
    const store = await openStateStore(dataDir, config.store);
    try {
      const holds = (await store.listHolds()).filter((h) => args.values.all === true || !h.released);
      for (const h of holds) {
        if (args.values.json === true) args.out.write(JSON.stringify(h) + '\n');
        else {
          const f = ['user', 'target', 'session', 'since', 'until'].map((k) => (h[k as keyof HoldRecord] ? `${k}=${h[k as keyof HoldRecord] as string}` : '')).filter(Boolean).join(' ');
          args.out.write(`${h.id}  ${h.released ? 'released' : 'active'}  ${f}  by ${h.by} at ${h.createdAt}: ${h.reason}\n`);
        }
      }
    } finally {
      await store.close();
    }
    return 0;
  },
};

export const holdReleaseCommand: Command = {
  name: 'hold release',
  summary: 'Release a legal hold (with a reason); its events then follow the retention again.',
  usage: 'ID --reason TEXT [--by NAME]',
  positionals: true,
  options: {
    reason: { type: 'string', arg: 'TEXT', help: 'why (required; recorded)' },
    by: { type: 'string', arg: 'NAME', help: 'who releases, for the audit event (default: the OS user)' },
  },
  examples: ['hold release 01HV44T0KD --reason "case closed"'],
  async run(args: CommandArgs) {
    if (args.positionals.length !== 1) throw new UsageError('expected exactly one hold id');
    const id = args.positionals[0];
    const reason = requireOpt(args.values, 'reason');
    const by = stringOpt(args.values, 'by');
    const ctx = await openLocal(args);
    try {
      const hold = await ctx.store.getHold(id);
      if (!hold || hold.released) throw new NotFoundError(`no active hold ${id}`);
      // Recorded before it takes effect: a release never goes unrecorded.
      await holdEvent(ctx.events, 'hold.released', by, hold, { ...describeHold(hold), release_reason: reason });
      await ctx.store.putHold({ ...hold, released: { by: by ?? localUser(), time: new Date().toISOString(), reason } });
    } finally {
      await ctx.close();
    }
    args.out.write(`released ${id}\n`);
    return 0;
  },
};

export const RETENTION_COMMANDS: Command[] = [auditPurgeCommand, holdAddCommand, holdListCommand, holdReleaseCommand];
