import path from 'node:path';
import type { Logger } from 'pino';
import type { VigilConfig } from './config/schema.ts';
import type { AuditOpenOptions } from '../recorder/audit/index.ts';

/**
 * Where things live inside the data directory. Only the gateway and CLI assembly use these; everything
 * else receives opened services, never paths.
 */
export const dataPaths = (dataDir: string) => ({
  audit: path.join(dataDir, 'audit'),
  recordings: path.join(dataDir, 'recordings'),
  reports: path.join(dataDir, 'reports'),
  auditSigningKey: path.join(dataDir, 'ca', 'audit_signing.key'),
  auditPublicKey: path.join(dataDir, 'ca', 'audit_signing.pub'),
});

/** Audit log options from config, for the gateway's writer and the CLI's writer-or-spool. */
export function auditOptions(dataDir: string, config: VigilConfig, log: Logger): AuditOpenOptions {
  return {
    signingKeyFile: dataPaths(dataDir).auditSigningKey,
    segmentMaxBytes: config.audit.segment_max_bytes,
    checkpointIntervalMs: config.audit.checkpoint_interval,
    checkpointEvery: config.audit.checkpoint_every,
    commitWindowMs: config.audit.commit_window,
    backgroundWindowMs: config.audit.background_commit_window,
    strictWindowMs: config.audit.strict_commit_window,
    log,
  };
}
