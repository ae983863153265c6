import type { Logger } from 'pino';
import type { VigilConfig } from '../config/schema.ts';
import type { IdentityService } from '../identity/types.ts';
import type { Authorizer } from '../authz/types.ts';
import type { StateStore } from '../store/types.ts';
import type { RecordingStore } from '../../recorder/types.ts';
import type { EventBus } from '../events/bus.ts';
import type { SessionRegistry } from '../sessions/registry.ts';
import type { RefusalBudget } from '../sessions/refusal-budget.ts';
import type { SharedSessions } from '../sessions/shared-registry.ts';
import type { SharedIndexFollower } from '../../recorder/audit/shared-index.ts';
import type { IndexFollower } from '../../recorder/audit/index-follower.ts';
import type { AlertService } from '../alerts/index.ts';
import type { LinkStore } from '../access/links.ts';
import type { Guardrails } from '../guardrails/index.ts';
import type { ReloadReport, ReloadTrigger } from './reload-report.ts';
import type { TargetDirectory } from '../config/target-directory.ts';

/** The shared services bundle every proxy, the API and the CLI work with. */
export interface GatewayServices {
  config: VigilConfig;
  /**
   * Bumped by each config reload when it swaps `config`: an admission remembers the generation it was
   * authorized under, and is authorized again if it changed before the session is registered.
   */
  configGeneration?: number;
  /** Absolute data directory. */
  dataDir: string;
  log: Logger;
  events: EventBus;
  identity: IdentityService;
  authz: Authorizer;
  store: StateStore;
  sessions: SessionRegistry;
  /** Replicas on a PostgreSQL store: every replica's live sessions, listed and killed from any of them. */
  sharedSessions?: SharedSessions;
  recordings: RecordingStore;
  targets: TargetDirectory;
  /** Per-source budget for unauthenticated refusals (absent: every refusal is recorded one by one). */
  refusals?: RefusalBudget;
  /** The search index kept up with the log (absent when audit.index.enabled is false). */
  auditIndex?: IndexFollower;
  /** The follower copying this replica's signed records into the shared index (PostgreSQL store only). */
  sharedAuditIndex?: SharedIndexFollower;
  /** Alert rules and notifiers (absent when none are configured). */
  alerts?: AlertService;
  /** Set when shutdown began: `GET /readyz` answers 503 from then on (load balancers drain the replica). */
  draining?: boolean;
  /** One-time approval links (present when access.approvals sends them). */
  accessLinks?: LinkStore;
  /** Guardrails asked before each statement/command is forwarded (absent when none are configured). */
  guardrails?: Guardrails;
  /** Re-read and apply the config file (set by the running gateway; absent in CLI contexts). */
  reloadConfig?: (trigger: ReloadTrigger) => Promise<ReloadReport>;
}
