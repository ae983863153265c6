import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterEach, vi } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { openAuditLog, listSegments, searchAuditLog } from '../../recorder/audit/index.ts';
import { startDailyPurge } from '../../src/gateway/retention.ts';
import { EventBus } from '../../src/events/bus.ts';
import { openStateStore } from '../../src/store/index.ts';
import type { StateStore } from '../../src/store/types.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { silentLogger } from '../../src/log.ts';
import { runCliCaptured } from '../support/cli.ts';
import { auditOptions, sampleEvent } from './helpers.ts';

const DAY = 86_400_000;

afterEach(() => vi.useRealTimers());

describe('retention review: the daily purge runs off the gateway thread', () => {
  it('verifying and planning leave the event loop free (sessions keep being relayed), and the purge still completes', async () => {
    const base = tempDir('vigil-retention-offthread-');
    const dataDir = path.join(base, 'data');
    const config = parseConfig({ data_dir: dataDir, retention: { floor: '90d', default: '100d', recordings: '100d', auto_purge: true } }, base);
    await initIdentity(dataDir, config);
    const paths = dataPaths(dataDir);
    const writer = await openAuditLog(paths.audit, auditOptions(paths.auditSigningKey, { segmentMaxBytes: 4000 }));
    for (let i = 0; i < 60; i++) await writer.append(sampleEvent(i, { session_id: `S${Math.floor(i / 10)}` }));
    fs.mkdirSync(path.join(paths.recordings, 'S1'), { recursive: true });
    fs.writeFileSync(path.join(paths.recordings, 'S1', 'ch0.cast'), '{"version":2,"width":80,"height":24,"timestamp":0}\n');
    const segments = listSegments(paths.audit);
    const real = await openStateStore(dataDir);
    // The purge reads the holds after verifying, again after planning and once more after recording
    // audit.purged (right before removing): at each read, record whether the
    // event loop turned since the previous one (a sync whole-log read in between would have kept it busy).
    const loopTurnedBefore: boolean[] = [];
    let turned = true;
    const watchLoop = () => {
      turned = false;
      setImmediate(() => (turned = true));
    };
    const store = new Proxy(real, {
      get(target, prop, receiver) {
        if (prop === 'listHolds') {
          return async () => {
            loopTurnedBefore.push(turned);
            const holds = await target.listHolds();
            watchLoop();
            return holds;
          };
        }
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as StateStore;
    const job = startDailyPurge({ config, store, events: new EventBus(writer), log: silentLogger(), paths }, { firstAfterMs: 3_600_000 });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 120 * DAY });
    let res;
    try {
      watchLoop();
      res = await job.runOnce();
    } finally {
      vi.useRealTimers();
      await job.stop();
      await writer.close();
      await real.close();
    }
    expect(res?.status).toBe('purged');
    expect(loopTurnedBefore).toEqual([true, true, true]);
    expect(listSegments(paths.audit)[0]).toBe(segments[segments.length - 1]);
    expect(fs.existsSync(path.join(paths.recordings, 'S1'))).toBe(false);
    expect((await searchAuditLog(paths.audit, { type: 'audit.purged' })).records).toHaveLength(1);
    fs.writeFileSync(path.join(base, 'vigil.yaml'), `data_dir: ${dataDir}\n`);
    expect((await runCliCaptured(['audit', 'verify', '--config', path.join(base, 'vigil.yaml')])).code).toBe(3);
  });

  it('stopping the gateway ends a purge still verifying in its worker, and nothing is removed', async () => {
    const base = tempDir('vigil-retention-offthread-');
    const dataDir = path.join(base, 'data');
    const config = parseConfig({ data_dir: dataDir, retention: { floor: '90d', default: '100d', auto_purge: true } }, base);
    await initIdentity(dataDir, config);
    const paths = dataPaths(dataDir);
    const writer = await openAuditLog(paths.audit, auditOptions(paths.auditSigningKey, { segmentMaxBytes: 4000 }));
    for (let i = 0; i < 60; i++) await writer.append(sampleEvent(i));
    const segments = listSegments(paths.audit);
    const store = await openStateStore(dataDir);
    const job = startDailyPurge({ config, store, events: new EventBus(writer), log: silentLogger(), paths }, { firstAfterMs: 3_600_000 });
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 120 * DAY });
    let res;
    try {
      const run = job.runOnce();
      await job.stop();
      res = await run;
    } finally {
      vi.useRealTimers();
      await writer.close();
      await store.close();
    }
    expect(res).toBeUndefined();
    expect(listSegments(paths.audit)).toEqual(segments);
  });
});
