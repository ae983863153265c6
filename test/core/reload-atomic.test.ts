import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * A reload whose new parts cannot be built (here: a first_in alert rule needs its table in state.db while
 * another process holds state.db's write lock past busy_timeout) applies nothing: the old roles and alert
 * service stay in force, config.reload_failed says why, and the caller gets a report instead of a throw.
 * Once the lock is gone the same file applies whole.
 */

let tg: TestGateway;
let configFile: string;
let doc: Record<string, any>;

beforeAll(async () => {
  const base = tempDir('vigil-reload-atomic-');
  configFile = path.join(base, 'vigil.yaml');
  tg = await startTestGateway(
    {
      roles: [{ name: 'ops' }, { name: 'dba' }],
      notifiers: [{ name: 'hook', kind: 'webhook', url: 'http://127.0.0.1:9/x' }],
      alerts: [{ name: 'r1', match: { type: 'auth.failure' }, threshold: 5, window: '1m', notify: ['hook'] }],
    },
    base,
    { configFile },
  );
  doc = JSON.parse(fs.readFileSync(configFile, 'utf8'));
});

afterAll(async () => {
  await tg?.stop();
});

/**
 * This process's open connections to state.db, counted by their write-ahead log descriptors (one per
 * connection; SQLite may keep a closed connection's main-file descriptor until the file's locks are gone).
 */
const stateDbFds = () =>
  fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return path.basename(fs.readlinkSync(`/proc/self/fd/${fd}`)) === 'state.db-wal';
    } catch {
      return false;
    }
  }).length;

const configEvents = () => tg.events.filter((e) => e.type.startsWith('config.')).map((e) => e.type);

describe('config reload that fails while applying', () => {
  it('changes nothing, records config.reload_failed and reports it; applies whole later', { timeout: 30_000 }, async () => {
    doc.roles = [{ name: 'ops' }];
    doc.alerts.push({ name: 'first', match: { type: 'session.start' }, first_in: '30d', group_by: ['actor.user'], notify: ['hook'] });
    fs.writeFileSync(configFile, JSON.stringify(doc));
    const alertsBefore = tg.gw.services.alerts;
    const configBefore = tg.gw.services.config;
    // Another process (a CLI command, a backup) holds state.db's write lock longer than busy_timeout.
    const connectionsBefore = stateDbFds();
    const other = new Database(path.join(tg.dataDir, 'state.db'));
    other.exec('BEGIN EXCLUSIVE');
    let report;
    try {
      report = await tg.gw.reload({ via: 'test' });
    } finally {
      other.exec('COMMIT');
      other.close();
    }
    expect(report).toMatchObject({ ok: false, error: { code: 'VIGIL_CONFIG_RELOAD_FAILED' } });
    expect(report.error!.message).toMatch(/keeping the running one/);
    expect(tg.gw.services.config).toBe(configBefore);
    expect(tg.gw.services.config.roles.map((r) => r.name)).toEqual(['ops', 'dba']);
    expect(tg.gw.services.alerts).toBe(alertsBefore);
    expect(configEvents()).toEqual(['config.reload_failed']);
    // What the failed build opened (the new alert service's outbox connection) was given back.
    expect(stateDbFds()).toBe(connectionsBefore);

    const again = await tg.gw.reload({ via: 'test' });
    expect(again).toMatchObject({ ok: true, roles: { removed: ['dba'] }, alerts: { added: ['first'] } });
    expect(tg.gw.services.config.roles.map((r) => r.name)).toEqual(['ops']);
    expect(tg.gw.services.alerts).not.toBe(alertsBefore);
    expect(configEvents()).toEqual(['config.reload_failed', 'config.reloaded']);
  });
});
