import path from 'node:path';
import { parseConfig } from '../../app/config.ts';
import type { VigilConfig } from '../../src/config/schema.ts';
import { EventBus } from '../../src/events/bus.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { openStateStore } from '../../src/store/index.ts';
import type { StateStore } from '../../src/store/types.ts';
import type { AuditSink, AppendReceipt } from '../../recorder/types.ts';
import { AccessService, type Actor } from '../../src/access/service.ts';
import { tempDir } from '../support/tmp.ts';

/** An audit sink that keeps events in memory, for service-level tests (the real log is tested elsewhere). */
export class MemorySink implements AuditSink {
  readonly events: AuditEvent[] = [];
  healthy = true;
  failure?: Error;
  async append(e: AuditEvent): Promise<AppendReceipt> {
    if (!this.healthy) throw this.failure ?? new Error('sink down');
    this.events.push(e);
    return { seq: this.events.length, hash: String(this.events.length) };
  }
  async close(): Promise<void> {}
}

/** A policy with standing roles, requestable roles, one needing two approvals, and on-call users. */
export const POLICY = {
  targets: [
    { name: 'pg-prod', protocol: 'postgres', host: '127.0.0.1', port: 5432, user: 'app', labels: { env: 'prod', kind: 'db' } },
    { name: 'pg-stage', protocol: 'postgres', host: '127.0.0.1', port: 5433, user: 'app', labels: { env: 'stage', kind: 'db' } },
    { name: 'web-1', protocol: 'ssh', host: '127.0.0.1', port: 22, logins: ['deploy', 'root'], labels: { env: 'prod' } },
    { name: 'web-2', protocol: 'ssh', host: '127.0.0.1', port: 22, logins: ['deploy'], roles: ['web-ops'] },
  ],
  roles: [
    { name: 'dev', targets: ['pg-stage'], databases: ['app'] },
    { name: 'web-ops', logins: ['deploy'] },
    { name: 'prod-ssh', target_labels: { env: 'prod' }, logins: ['*'], port_forwarding: true, approvers: ['sre-lead'], max_ttl: '2h' },
    { name: 'prod-dba', target_labels: { env: 'prod', kind: 'db' }, databases: ['*'], approvers: ['sre-lead', 'dba-lead'], max_ttl: '1h' },
    { name: 'prod-root', targets: ['web-1'], logins: ['root'], approvers: ['sre-lead'], approvals_required: 2 },
    { name: 'sre-lead' },
    { name: 'admin' },
  ],
  access: { on_call: ['carol'], admin_roles: ['admin'] },
};

export interface AccessEnv {
  config: VigilConfig;
  store: StateStore;
  sink: MemorySink;
  events: EventBus;
  access: AccessService;
  dataDir: string;
  of(type: string): AuditEvent[];
  close(): Promise<void>;
}

export async function accessEnv(overrides: Record<string, unknown> = {}, dataDir = path.join(tempDir(), 'data')): Promise<AccessEnv> {
  const config = parseConfig({ data_dir: dataDir, ...POLICY, ...overrides }, dataDir, false);
  const store = await openStateStore(dataDir);
  const sink = new MemorySink();
  const events = new EventBus(sink);
  const access = new AccessService({ config, store, events });
  return {
    config,
    store,
    sink,
    events,
    access,
    dataDir,
    of: (type) => sink.events.filter((e) => e.type === type),
    close: () => store.close(),
  };
}

export function actor(user: string, roles: string[] = []): Actor {
  return { user, roles, source: { ip: '192.0.2.10', port: 40000 } };
}
