import type { Logger } from 'pino';
import type { VigilConfig } from '../config/schema.ts';
import type { HoldRecord, StateStore } from '../store/types.ts';
import type { EventBus } from '../events/bus.ts';
import type { RemoteRecordings } from '../../recorder/types.ts';
import { runPurge, type PurgeRunResult } from '../../recorder/retention/run.ts';
import type { HoldFilter, RetentionPolicy } from '../../recorder/retention/purge.ts';

const DAY = 86_400_000;

/** The retention section of the config as a policy: every key other than the named settings is a class. */
export function retentionPolicy(config: VigilConfig): RetentionPolicy {
  const { floor, default: def, recordings, auto_purge: _auto, ...classes } = config.retention;
  return { floorMs: floor, defaultMs: def, recordingsMs: recordings, classes: classes as Record<string, number> };
}

export function activeHolds(holds: HoldRecord[]): HoldFilter[] {
  return holds.filter((h) => !h.released);
}

export interface DailyPurgeDeps {
  config: VigilConfig;
  store: StateStore;
  events: EventBus;
  log: Logger;
  paths: { audit: string; recordings: string; auditPublicKey: string };
  /** Recordings in object storage (recording.storage kind s3), purged with the local ones. */
  remote?: RemoteRecordings;
}

export interface DailyPurge {
  /** One run now (what the timer does); resolves when it is done. Runs never overlap. */
  runOnce(): Promise<PurgeRunResult | undefined>;
  stop(): Promise<void>;
}

/**
 * The gateway's automatic purge (`retention.auto_purge`): first a minute after start, then daily. A failed
 * or refused run is logged and retried the next day; it never affects sessions.
 */
export function startDailyPurge(d: DailyPurgeDeps, opts: { firstAfterMs?: number; everyMs?: number } = {}): DailyPurge {
  let running: Promise<PurgeRunResult | undefined> | undefined;
  let stopped = false;
  // Shutdown ends a purge still verifying or planning in its worker rather than waiting for it.
  const stopping = new AbortController();
  const runOnce = (): Promise<PurgeRunResult | undefined> => {
    if (running) return running;
    running = (async () => {
      try {
        const res = await runPurge({
          auditDir: d.paths.audit,
          recordingsDir: d.paths.recordings,
          publicKeyFile: d.paths.auditPublicKey,
          policy: retentionPolicy(d.config),
          reason: 'retention (daily)',
          remote: d.remote,
          offThread: true,
          signal: stopping.signal,
          holds: async () => activeHolds(await d.store.listHolds()),
          record: (details) =>
            d.events.emit({ type: 'audit.purged', outcome: 'success', actor: { user: 'vigil', roles: [] }, source: { ip: 'local', via: 'gateway' }, target: { name: 'audit', protocol: 'vigil' }, details }),
        });
        if (res.status === 'refused') d.log.error({ problem: res.problem }, 'retention purge refused: the audit log does not verify');
        else if (res.status === 'purged') d.log.info({ segments: res.entry?.segments.length ?? 0, recordings: res.recordings.sessions.length, stored_recordings: res.recordings.remote?.length ?? 0 }, 'retention purge done');
        if (res.status !== 'refused' && res.recordings.remoteError) d.log.error({ err: res.recordings.remoteError }, 'retention purge: recordings in object storage could not be listed; they wait for the next run');
        return res;
      } catch (e) {
        if (stopping.signal.aborted) d.log.info('retention purge stopped by shutdown; it runs again after the next start');
        else d.log.error({ err: e }, 'retention purge failed');
        return undefined;
      } finally {
        running = undefined;
      }
    })();
    return running;
  };
  let timer: NodeJS.Timeout = setTimeout(function tick() {
    if (stopped) return;
    void runOnce().finally(() => {
      if (!stopped) timer = setTimeout(tick, opts.everyMs ?? DAY).unref();
    });
  }, opts.firstAfterMs ?? 60_000).unref();
  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      stopping.abort();
      await running;
    },
  };
}
