import fs from 'node:fs';
import type { CommandArgs } from '../command.ts';
import { mayUseSharedStore } from '../data-dir-arg.ts';
import { dataPaths } from '../../data-dir.ts';
import type { AuditChainStore, SharedAuditQuery, StateStore } from '../../store/types.ts';
import type { AuditQuery } from '../../../recorder/audit/read.ts';
import { iso, isoUntil } from '../../../recorder/audit/read.ts';
import { SharedIndexer, replicaIdOf, type LocalChain } from '../../../recorder/audit/shared-index.ts';

/** The shared audit index of a PostgreSQL store, and this data dir's chain in it. */
export interface SharedAudit {
  store: StateStore;
  chains: AuditChainStore;
  /** This data dir's chain (absent when the data dir has no audit log or key yet). */
  local?: LocalChain;
  close(): Promise<void>;
}

/** With `store: {kind: postgres}`: the shared index; with SQLite (one host) undefined. */
export async function openSharedAudit(args: Pick<CommandArgs, 'configPath' | 'dataDir' | 'proxies'>): Promise<SharedAudit | undefined> {
  // Most installations have no PostgreSQL store: they do not pay for loading and validating the config.
  if (!(await mayUseSharedStore(args))) return undefined;
  const { loadFromArgs } = await import('../context.ts');
  const { config, dataDir } = loadFromArgs(args);
  if (config.store.kind !== 'postgres') return undefined;
  const { openStateStore } = await import('../../store/index.ts');
  const store = await openStateStore(dataDir, config.store);
  if (!store.auditChains) {
    await store.close();
    return undefined;
  }
  const paths = dataPaths(dataDir);
  const local =
    fs.existsSync(paths.audit) && fs.existsSync(paths.auditPublicKey)
      ? { auditDir: paths.audit, replica: replicaIdOf(dataDir), publicKeyPem: fs.readFileSync(paths.auditPublicKey, 'utf8') }
      : undefined;
  return { store, chains: store.auditChains, local, close: () => store.close() };
}

/**
 * How many records a CLI command copies before answering. A search adds this replica's records past the
 * indexed head from its local index anyway; a big backlog (a log that predates the PostgreSQL store) is
 * the gateway follower's work, not a search's.
 */
const CLI_CATCH_UP = 50_000;

/**
 * Before reading the shared index: copy this data dir's signed records into it (a running gateway does
 * the same continuously; the head check in the database keeps the two from doubling anything). Best
 * effort: a failure only means this replica's newest records may be missing, which is said on stderr.
 */
export async function catchUpLocal(shared: SharedAudit, err: { write(text: string): unknown }, maxRecords = CLI_CATCH_UP): Promise<number> {
  if (!shared.local) return 0;
  try {
    const indexer = new SharedIndexer(shared.chains, shared.local);
    const res = await indexer.sync(5000, maxRecords);
    if (res.diverged) err.write(`vigil: this replica's chain diverged from the shared index at seq ${res.diverged.seq} (${res.diverged.problem}); run \`vigil audit verify\`\n`);
    else if (!res.caughtUp) err.write(`vigil: the shared index is behind this replica's log (indexed up to seq ${indexer.indexedSeq}); the gateway's follower is copying the rest\n`);
    return indexer.indexedSeq;
  } catch (e) {
    err.write(`vigil: could not bring the shared index up to this replica's log (${(e as Error).message})\n`);
    return (await shared.chains.chain(shared.local.replica).catch(() => undefined))?.indexedSeq ?? 0;
  }
}

export function toSharedQuery(q: AuditQuery, extra: { replica?: string; text?: string } = {}): SharedAuditQuery {
  return {
    user: q.user, target: q.target, type: q.type, session: q.session, since: iso(q.since), until: isoUntil(q.until),
    hideCheckpoints: q.hideCheckpoints, limit: q.limit, replica: extra.replica, text: extra.text,
  };
}
