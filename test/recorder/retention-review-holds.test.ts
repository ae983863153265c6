import fs from 'node:fs';
import path from 'node:path';
import { describe, it, expect, afterEach, vi } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { parseConfig } from '../../app/config.ts';
import { initIdentity } from '../../src/identity/ca.ts';
import { createEvent } from '../../src/events/envelope.ts';
import { openAuditLog, listSegments, searchAuditLog } from '../../recorder/audit/index.ts';
import { runPurge } from '../../recorder/retention/run.ts';
import { retentionPolicy, activeHolds } from '../../src/gateway/retention.ts';
import { openStateStore } from '../../src/store/index.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { auditOptions, sampleEvent } from './helpers.ts';
import { runCliCaptured } from '../support/cli.ts';

const DAY = 86_400_000;

/**
 * A data dir whose log holds, in order: 30 events of bob's session S-BOB, alice (an admin) watching S-BOB
 * (session.watch_started: the session is in details.session_id, as src/sessions/control.ts writes it),
 * then 30 events of carol's session S-CAROL; small segments, so each part fills segments of its own.
 * S-BOB and S-CAROL have recordings.
 */
async function setup() {
  const base = tempDir('vigil-retention-review-');
  const dataDir = path.join(base, 'data');
  const configPath = path.join(base, 'vigil.yaml');
  fs.writeFileSync(configPath, [`data_dir: ${dataDir}`, 'retention:', '  floor: 90d', '  default: 100d', '  recordings: 100d', ''].join('\n'));
  const config = parseConfig({ data_dir: dataDir, retention: { floor: '90d', default: '100d', recordings: '100d' } }, base);
  await initIdentity(dataDir, config);
  const paths = dataPaths(dataDir);
  const w = await openAuditLog(paths.audit, auditOptions(paths.auditSigningKey, { segmentMaxBytes: 4000 }));
  const bob = { user: 'bob', roles: ['dba'] };
  for (let i = 0; i < 30; i++) await w.append(sampleEvent(i, { session_id: 'S-BOB', actor: bob }));
  await w.append(
    createEvent({
      type: 'session.watch_started',
      outcome: 'success',
      actor: { user: 'alice', roles: ['admin'] },
      source: { ip: '10.0.0.9' },
      target: { name: 'session/S-BOB', protocol: 'vigil' },
      details: { session_id: 'S-BOB', session_user: 'bob', session_target: 'orders-db', session_protocol: 'ssh', from: 'start' },
    }),
  );
  for (let i = 0; i < 30; i++) await w.append(sampleEvent(i, { session_id: 'S-CAROL', actor: { user: 'carol', roles: ['dba'] } }));
  await w.close();
  for (const s of ['S-BOB', 'S-CAROL']) {
    fs.mkdirSync(path.join(paths.recordings, s), { recursive: true });
    fs.writeFileSync(path.join(paths.recordings, s, 'ch0.cast'), '{"version":2,"width":80,"height":24,"timestamp":0}\n');
  }
  return { dataDir, config, paths, c: (...a: string[]) => runCliCaptured([...a, '--config', configPath]) };
}

/** Run `fn` with the wall clock moved `days` ahead (Date only; timers keep running). */
async function later<T>(days: number, fn: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + days * DAY });
  try {
    return await fn();
  } finally {
    vi.useRealTimers();
  }
}

afterEach(() => vi.useRealTimers());

const sessionEvents = async (audit: string, session: string) => (await searchAuditLog(audit, {})).records.filter((r) => r.event.session_id === session);

describe('retention review: legal holds', () => {
  it('a hold on an admin keeps the session they watched: its recording and its events', async () => {
    const { paths, c } = await setup();
    expect(listSegments(paths.audit).length).toBeGreaterThan(4);
    expect((await c('hold', 'add', '--user', 'alice', '--reason', 'case 2026-31: what alice saw')).code).toBe(0);
    const res = await later(120, () => c('audit', 'purge'));
    expect(res.err).toBe('');
    expect(res.code).toBe(0);
    // What alice watched is the evidence: bob's recording, and bob's events that give it meaning.
    expect(fs.existsSync(path.join(paths.recordings, 'S-BOB'))).toBe(true);
    expect(await sessionEvents(paths.audit, 'S-BOB')).toHaveLength(30);
    expect((await c('audit', 'verify')).code).toBe(3);
  });

  it('a hold placed while a purge plans is honoured (the holds are read again before anything is removed)', async () => {
    const { dataDir, config, paths, c } = await setup();
    const store = await openStateStore(dataDir);
    let reads = 0;
    try {
      const res = await later(120, () =>
        runPurge({
          auditDir: paths.audit,
          recordingsDir: paths.recordings,
          publicKeyFile: paths.auditPublicKey,
          policy: retentionPolicy(config),
          reason: 'retention (daily)',
          holds: async () => {
            const active = activeHolds(await store.listHolds());
            // Counsel runs `vigil hold add --session S-BOB` just after the purge read the holds.
            if (reads++ === 0) await store.putHold({ id: 'H-LATE', session: 'S-BOB', reason: 'late case', by: 'counsel', createdAt: new Date().toISOString() });
            return active;
          },
          record: async (details) => {
            const w = await openAuditLog(paths.audit, auditOptions(paths.auditSigningKey, { segmentMaxBytes: 4000 }));
            try {
              await w.append(createEvent({ type: 'audit.purged', outcome: 'success', actor: { user: 'vigil', roles: [] }, source: { ip: 'local' }, target: { name: 'audit', protocol: 'vigil' }, details }));
            } finally {
              await w.close();
            }
          },
        }),
      );
      expect(res.status).toBe('purged');
    } finally {
      await store.close();
    }
    expect(fs.existsSync(path.join(paths.recordings, 'S-BOB'))).toBe(true);
    expect(await sessionEvents(paths.audit, 'S-BOB')).toHaveLength(30);
    const [purged] = (await searchAuditLog(paths.audit, { type: 'audit.purged' })).records;
    expect(purged.event.details.holds).toContain('H-LATE');
    expect((await c('audit', 'verify')).code).toBe(3);
  });
});
