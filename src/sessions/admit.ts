import { trace, SpanStatusCode } from '@opentelemetry/api';
import type { GatewayServices } from '../gateway/services.ts';
import type { TargetConfig } from '../config/schema.ts';
import type { Principal, VerifyResult } from '../identity/types.ts';
import type { Decision } from '../authz/types.ts';
import type { AuditEvent } from '../events/envelope.ts';
import { CONFIG_RELOAD_MESSAGE, type EndReason, type SessionHandle, type Terminator } from './registry.ts';
import { StoreUnavailableError } from '../errors.ts';

/**
 * The one path from "a client presented a credential for a target" to a registered, recorded session,
 * shared by every protocol: fail closed when the audit log is down, verify, authorize (deny by default),
 * write auth.success/auth.failure, register the session (expiry timers), write session.start, and at the
 * end write session.end exactly once.
 */
export interface AdmitRequest {
  protocol: string;
  /** Connection id; becomes the session id. */
  connId: string;
  source: { ip: string; port: number };
  credential: VerifyResult;
  targetName: string;
  login?: string;
  database?: string;
  /** Extra details for the auth events (e.g. `{ method: 'publickey' }`). */
  details?: Record<string, unknown>;
  /**
   * What the proxy itself would refuse about an authorized request (e.g. a login the target's
   * user_provisioning cannot use): asked after authorization, before auth.success, so such a refusal is
   * an auth.failure with its reason instead of an auth.success followed by a silent disconnect.
   */
  refusal?: (target: TargetConfig) => { reason: string; message: string } | undefined;
}

export type Admission =
  | {
      ok: true;
      principal: Principal;
      target: TargetConfig;
      decision: Extract<Decision, { allow: true }>;
      /** The config generation (services.configGeneration) the decision was taken under. */
      generation: number;
    }
  | { ok: false; reason: string; /** safe for the client */ message: string };

/** The shared state store (PostgreSQL) is away: grants and locks cannot be checked, so admit nobody. */
const STORE_DOWN = 'vigil cannot reach its state store, so new sessions are refused; live ones continue. Try again shortly.';
const AUDIT_DOWN = 'vigil cannot write its audit log, so new sessions are refused. Contact the gateway operator.';

function eventTarget(protocol: string, targetName: string, target: TargetConfig | undefined, login?: string, database?: string): AuditEvent['target'] {
  return { name: targetName || '(none)', protocol, host: target ? `${target.host}:${target.port}` : undefined, login, database };
}

export async function admit(services: GatewayServices, req: AdmitRequest): Promise<Admission> {
  const { events, log } = services;
  if (!events.healthy) {
    log.error({ err: events.failure?.message, conn: req.connId }, 'refusing session: audit log unavailable (fail closed)');
    events.noteRefusedSession();
    return { ok: false, reason: 'audit_unavailable', message: AUDIT_DOWN };
  }
  const target = services.targets.find(req.targetName, req.protocol);
  const evTarget = eventTarget(req.protocol, req.targetName, target, req.login, req.database);

  /** Write auth.success / auth.failure; false when it could not be recorded (then nothing is admitted). */
  const recordAuth = async (success: boolean, actor: AuditEvent['actor'], details: Record<string, unknown>): Promise<boolean> => {
    try {
      await events.emit({
        type: success ? 'auth.success' : 'auth.failure',
        outcome: success ? 'success' : 'failure',
        actor,
        source: req.source,
        target: evTarget,
        session_id: req.connId,
        details: { ...details, ...req.details },
      });
      return true;
    } catch (e) {
      log.error({ err: (e as Error).message }, `could not record ${success ? 'auth.success' : 'auth.failure'}`);
      return false;
    }
  };
  const refuse = async (actor: AuditEvent['actor'], reason: string, message: string, detail?: string): Promise<Admission> =>
    (await recordAuth(false, actor, { reason, detail })) ? { ok: false, reason, message } : { ok: false, reason: 'audit_unavailable', message: AUDIT_DOWN };

  const cred = req.credential;
  if (!cred.ok) {
    // Unauthenticated: beyond the source's budget the refusal is counted into a summary, not written.
    if (services.refusals && !services.refusals.take(req.protocol, req.source.ip, cred.reason)) return { ok: false, reason: cred.reason, message: cred.message };
    return refuse({ user: cred.user ?? 'unknown', roles: [], cert_serial: cred.certSerial }, cred.reason, cred.message, cred.detail);
  }
  const p = cred.principal;
  const actor = { user: p.user, roles: p.roles, cert_serial: p.certSerial };
  let decision: Decision;
  const generation = services.configGeneration ?? 0;
  try {
    decision = await services.authz.authorize({ principal: p, target: req.targetName, protocol: req.protocol, login: req.login, database: req.database });
  } catch (e) {
    if (e instanceof StoreUnavailableError) {
      log.error({ err: e.message }, 'state store unavailable; denying');
      return refuse(actor, 'store_unavailable', STORE_DOWN);
    }
    log.error({ err: e }, 'authorizer failed; denying');
    return refuse(actor, 'authz_error', 'Access denied.');
  }
  if (!decision.allow) return refuse(actor, decision.reason, decision.message);
  if (!target) return refuse(actor, 'unknown_target', 'No such target, or access denied.');
  const refusedByProxy = req.refusal?.(target);
  if (refusedByProxy) return refuse(actor, refusedByProxy.reason, refusedByProxy.message);

  if (!(await recordAuth(true, actor, { credential: p.credential, via: decision.via, grant_ids: decision.grantIds }))) {
    return { ok: false, reason: 'audit_unavailable', message: AUDIT_DOWN };
  }
  return { ok: true, principal: p, target, decision, generation };
}

const generationOf = (services: GatewayServices): number => services.configGeneration ?? 0;

/** Ask the current authorizer again (after a config reload), noting the generation it answers for. */
async function decideAgain(services: GatewayServices, req: AdmitRequest, principal: Principal): Promise<{ decision: Extract<Decision, { allow: true }>; generation: number } | { denied: string }> {
  const generation = generationOf(services);
  try {
    const now = await services.authz.authorize({ principal, target: req.targetName, protocol: req.protocol, login: req.login, database: req.database });
    return now.allow ? { decision: now, generation } : { denied: now.reason };
  } catch (e) {
    services.log.error({ err: e, conn: req.connId }, 'authorizer failed after a config reload; ending the session');
    return { denied: 'authz_error' };
  }
}

/** Counters a proxy updates while relaying; reported in session.end. */
export interface SessionStats {
  bytesFromClient: number;
  bytesToClient: number;
  /** Statements (databases) or channels (SSH). */
  statements: number;
}

export interface OpenSession {
  handle: SessionHandle;
  stats: SessionStats;
  /** Write session.end once (later calls are ignored) and remove the session from the registry. */
  end(reason: EndReason, details?: Record<string, unknown>): Promise<void>;
  /** Envelope fields for events of this session (actor/source/target/session_id). */
  eventBase(): Pick<AuditEvent, 'actor' | 'source' | 'target' | 'session_id'>;
}

/**
 * Register an admitted session and write session.start (awaited: if it cannot be recorded, the session
 * does not start). `terminator` is how the proxy ends the session in its own protocol.
 */
export async function openSession(
  services: GatewayServices,
  req: AdmitRequest,
  admission: Extract<Admission, { ok: true }>,
  terminator: Terminator,
  startDetails: Record<string, unknown> = {},
): Promise<OpenSession> {
  const { principal: p, target } = admission;
  // A config reload may have swapped the roles since the decision (while auth.success was written, or the
  // proxy prepared the session), and its cut of live sessions cannot see a session not registered yet:
  // while the generation differs from the one decided under, the current authorizer is asked again.
  let current: { decision: Extract<Decision, { allow: true }>; generation: number } | { denied: string } = { decision: admission.decision, generation: admission.generation };
  while ('decision' in current && current.generation !== generationOf(services)) current = await decideAgain(services, req, p);
  // Denied now: recorded like a live session the reload cut (session.start, then session.end with reason
  // config_reload), so the audit log reads the same whichever came first.
  const decision = 'decision' in current ? current.decision : admission.decision;
  // Registered in the same synchronous step as the generation check above: a later reload lists it.
  const handle = services.sessions.open(
    {
      protocol: req.protocol,
      principal: p,
      target: { name: target.name, host: target.host, port: target.port, login: req.login, database: req.database },
      source: req.source,
      grantIds: decision.grantIds,
      accessExpiresAt: decision.expiresAt,
    },
    terminator,
    req.connId,
  );
  // Frozen: the audit encoder reuses the JSON of frozen envelope parts across a session's events.
  const base = {
    actor: Object.freeze({ user: p.user, roles: Object.freeze([...p.roles]) as string[], cert_serial: p.certSerial }),
    source: Object.freeze({ ...req.source }),
    target: Object.freeze(eventTarget(req.protocol, target.name, target, req.login, req.database)),
    session_id: handle.id,
  };
  const stats: SessionStats = { bytesFromClient: 0, bytesToClient: 0, statements: 0 };
  // The same object the proxy counts into: the live session list reads it without asking the proxy.
  handle.session.stats = stats;
  const started = Date.now();
  // One span per session; a no-op unless the OpenTelemetry SDK was started (OTEL_EXPORTER_OTLP_ENDPOINT).
  const span = trace.getTracer('vigil').startSpan(`${req.protocol} session`, {
    attributes: { 'vigil.session_id': handle.id, 'vigil.user': p.user, 'vigil.target': target.name, 'vigil.protocol': req.protocol },
  });
  try {
    await services.events.emit({ type: 'session.start', outcome: 'success', ...base, details: { grant_ids: decision.grantIds, cert_not_after: p.notAfter.toISOString(), ...startDetails } });
  } catch (e) {
    handle.close('audit_unavailable');
    throw e;
  }
  if ('denied' in current) {
    services.log.info({ session: handle.id, user: p.user, target: target.name, reason: current.denied }, 'ending session: no longer allowed by the reloaded configuration');
    handle.terminate('config_reload', CONFIG_RELOAD_MESSAGE);
  }
  let ended: Promise<void> | undefined;
  return {
    handle,
    stats,
    eventBase: () => base,
    end(reason, details = {}) {
      return (ended ??= (async () => {
        const finalReason = handle.endReason ?? reason;
        handle.close(finalReason);
        const failed = !['client_closed', 'backend_closed', 'shutdown'].includes(finalReason);
        span.setAttribute('vigil.end_reason', finalReason);
        if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: finalReason });
        span.end();
        await services.events
          .emit({
            type: 'session.end',
            outcome: failed ? 'failure' : 'success',
            ...base,
            details: {
              reason: finalReason,
              duration_ms: Date.now() - started,
              bytes_from_client: stats.bytesFromClient,
              bytes_to_client: stats.bytesToClient,
              statements: stats.statements,
              ...details,
            },
          })
          .catch((e) => services.log.error({ err: (e as Error).message, session: handle.id }, 'could not record session.end'));
      })());
    },
  };
}
