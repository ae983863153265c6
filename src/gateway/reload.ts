import crypto from 'node:crypto';
import { loadConfig } from '../config/load.ts';
import type { ProxyConfigPart } from '../config/proxy-config.ts';
import type { VigilConfig } from '../config/schema.ts';
import { ConfigError } from '../errors.ts';
import { createAuthorizer } from '../authz/index.ts';
import { startAlerts, type AlertService } from '../alerts/index.ts';
import { Guardrails } from '../guardrails/index.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR, type AuditEvent } from '../events/envelope.ts';
import type { GatewayServices } from './services.ts';
import { CONFIG_RELOAD_MESSAGE } from '../sessions/registry.ts';
import { targetDirectory } from '../config/target-directory.ts';
import type { NamedChanges, ReloadReport, ReloadTrigger } from './reload-report.ts';

/**
 * Config reload (`SIGHUP`, `vigil config reload`, `POST /v1/config/reload`). The new file is parsed and
 * validated completely before anything changes; an invalid file changes nothing. A valid one replaces
 * targets, roles, access policy, alert rules and the limits sessions read when they start; live sessions
 * keep running unless the new roles/targets no longer allow them, then they are cut with reason
 * `config_reload`. Sections that are bound when the gateway starts (listeners, the audit log, data dir,
 * budgets, redaction, …) are never half-applied: their old values stay and the reload says a restart is
 * needed for them.
 */

/** Top-level sections a reload applies to new sessions at once. Everything else needs a restart. */
const LIVE_SECTIONS = new Set(['targets', 'roles', 'access', 'alerts', 'notifiers', 'guardrails', 'gateway', 'pre_auth', 'slow_clients', 'recording', 'certs', 'log']);
/**
 * Keys inside a live section that are still bound at start: the TLS certificate's names, the number of
 * worker processes, where recordings are stored (the recording store is built once), and the API
 * listener's TLS handshake and header deadlines (options of its HTTPS server).
 */
const START_BOUND_KEYS: Record<string, string[]> = {
  gateway: ['tls_sans', 'workers'],
  recording: ['storage'],
  pre_auth: ['handshake_timeout'],
  slow_clients: ['api_headers_timeout'],
};


function digest(config: VigilConfig): string {
  return crypto.createHash('sha256').update(JSON.stringify(config)).digest('hex');
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

function diffNamed<T extends { name: string }>(before: T[], after: T[], key: (x: T) => string = (x) => x.name): NamedChanges {
  const old = new Map(before.map((x) => [key(x), x]));
  const now = new Map(after.map((x) => [key(x), x]));
  return {
    added: [...now.keys()].filter((k) => !old.has(k)),
    removed: [...old.keys()].filter((k) => !now.has(k)),
    changed: [...now.keys()].filter((k) => old.has(k) && !same(old.get(k), now.get(k))),
  };
}

function describeListener(section: unknown): string {
  const s = section as { enabled?: boolean; listen?: { host: string; port: number } } | undefined;
  if (!s?.listen) return 'unset';
  return s.enabled === false ? 'disabled' : `${s.listen.host}:${s.listen.port}`;
}

/**
 * Merge `next` over `current` the way a live gateway can: sections bound at start keep their current
 * value (and are reported). Mutates and returns `next`.
 */
function effective(current: VigilConfig, next: VigilConfig, restart: { key: string; why: string }[], applied: string[]): VigilConfig {
  const cur = current as Record<string, unknown>;
  const nxt = next as Record<string, unknown>;
  for (const key of new Set([...Object.keys(cur), ...Object.keys(nxt)])) {
    if (same(cur[key], nxt[key])) continue;
    if (key === 'identity' && applyRoleMap(cur, nxt, applied)) continue;
    if (!LIVE_SECTIONS.has(key)) {
      const section = cur[key] as { listen?: unknown } | undefined;
      const listenerMoved = section && typeof section === 'object' && 'listen' in section && describeListener(cur[key]) !== describeListener(nxt[key]);
      restart.push({
        key: listenerMoved ? `${key}.listen` : key,
        why: listenerMoved ? `listener ${key} would move from ${describeListener(cur[key])} to ${describeListener(nxt[key])}; restart the gateway to apply` : `${key} is bound when the gateway starts; restart the gateway to apply`,
      });
      nxt[key] = cur[key];
      continue;
    }
    for (const sub of START_BOUND_KEYS[key] ?? []) {
      const a = (cur[key] as Record<string, unknown>)[sub];
      const b = (nxt[key] as Record<string, unknown>)[sub];
      if (!same(a, b)) {
        restart.push({ key: `${key}.${sub}`, why: `${key}.${sub} is bound when the gateway starts; restart the gateway to apply` });
        (nxt[key] as Record<string, unknown>)[sub] = a;
      }
    }
    if (!same(cur[key], nxt[key])) applied.push(key);
  }
  return next;
}

/**
 * `identity.oidc.role_map` is read at each sign-in and at each web console request, so it applies live;
 * the rest of `identity` (issuer, client) is bound at start. True when role_map was the only change
 * (then applied); false leaves the whole section to the restart rule.
 */
function applyRoleMap(cur: Record<string, unknown>, nxt: Record<string, unknown>, applied: string[]): boolean {
  type Identity = { oidc?: { role_map?: unknown } } | undefined;
  const a = cur.identity as Identity;
  const b = nxt.identity as Identity;
  if (!a?.oidc || !b?.oidc) return false;
  if (!same({ ...a, oidc: { ...a.oidc, role_map: undefined } }, { ...b, oidc: { ...b.oidc, role_map: undefined } })) return false;
  applied.push('identity.oidc.role_map');
  return true;
}

export interface Reloader {
  /**
   * Re-read the config file and apply it. Concurrent calls run one after the other. A follower is given
   * `next`, the configuration its primary applied, instead: it never reads the file.
   */
  reload(trigger: ReloadTrigger, next?: VigilConfig): Promise<ReloadReport>;
}

/**
 * `file` is the config file the gateway started with (undefined: built-in defaults, nothing to reload).
 * `dataDir` is the one in use: a reload never moves it (and `--data` keeps overriding the file).
 */
export function createReloader(services: GatewayServices, file: string | undefined, proxies: readonly ProxyConfigPart[] = [], opts: { follower?: boolean; fileDataDir?: string } = {}): Reloader {
  // The data_dir the file named when the gateway started (with `--data`, not the one in use).
  const startFileDataDir = opts.fileDataDir;
  let chain: Promise<unknown> = Promise.resolve();
  // A cluster worker (gateway.workers > 1) follows the primary's reload: it swaps in the configuration the
  // primary applied (sent over IPC, sections bound at start already kept as they were) for its new sessions
  // and records nothing; the primary writes config.reloaded and cuts the live sessions of every worker (it
  // lists them all). It never reads the file: that may say more, or other, than what the primary applied.
  const follower = opts.follower === true;

  async function emit(type: 'config.reloaded' | 'config.reload_failed', trigger: ReloadTrigger, details: Record<string, unknown>): Promise<void> {
    if (follower) return;
    await services.events
      .emit({
        type,
        outcome: type === 'config.reloaded' ? 'success' : 'failure',
        actor: (trigger.actor ?? SYSTEM_ACTOR) as AuditEvent['actor'],
        source: trigger.source ?? LOCAL_SOURCE,
        target: { name: 'config', protocol: 'vigil' },
        details: { via: trigger.via, ...details },
      })
      .catch((e) => services.log.error({ err: (e as Error).message }, `could not record ${type}`));
  }

  /**
   * What the new configuration needs that can fail (guardrail parsers, the alert service's state.db tables
   * and outbox), built while the old configuration is still in force. The new alert service takes the
   * event stream over from the old one without a gap (see startAlerts), then stops it (its delivery in
   * flight may take a notifier's timeout; undelivered notifications wait in the outbox). Rules whose
   * definition did not change keep their state (windows, fired groups awaiting their resolution, open
   * sessions, first-in memory): a notifier's rotated URL must not reset a count. If building the alert
   * service fails, the old one was never detached (that is its last step) and keeps running.
   */
  async function buildServices(next: VigilConfig, applied: string[]) {
    const targets = targetDirectory(next.targets);
    const authz = createAuthorizer(next, services.store);
    let guardrails = services.guardrails;
    if (applied.includes('guardrails')) {
      // Parsers load before the swap, so no session is admitted between the new config and its guardrails.
      if (next.guardrails.length) await Guardrails.ready();
      guardrails = next.guardrails.length ? new Guardrails(next.guardrails, services.guardrails) : undefined;
    }
    // Alerts and notifiers run in the primary only (a follower has none).
    let alerts: AlertService | undefined | 'unchanged' = 'unchanged';
    if (!follower && (applied.includes('alerts') || applied.includes('notifiers'))) {
      const previous = services.alerts;
      alerts = next.alerts.length || next.notifiers.length
        ? await startAlerts({ alerts: next.alerts, notifiers: next.notifiers, dataDir: services.dataDir, store: services.store, events: services.events, targets, log: services.log, ...(previous ? { previous } : {}) })
        : undefined;
    }
    return { targets, authz, guardrails, alerts };
  }

  async function run(trigger: ReloadTrigger, given?: VigilConfig): Promise<ReloadReport> {
    const { log } = services;
    if (!file && !given) {
      const error = { code: 'VIGIL_CONFIG_NO_FILE', key: '', message: 'the gateway runs on built-in defaults (no --config file); there is nothing to reload' };
      log.warn({ via: trigger.via }, error.message);
      await emit('config.reload_failed', trigger, { error });
      return { ok: false, error };
    }
    const current = services.config;
    let next: VigilConfig;
    // The data directory the file asks for (unset: given by the primary, nothing to compare).
    let fileDataDir: string | undefined;
    try {
      if (given) next = given;
      else {
        const loaded = loadConfig({ configPath: file, proxies });
        fileDataDir = loaded.dataDir;
        next = loaded.config;
        next.data_dir = services.dataDir;
      }
    } catch (e) {
      const error = e instanceof ConfigError ? { code: e.code, key: e.path, message: e.message } : { code: 'VIGIL_CONFIG_INVALID', key: '', message: (e as Error).message };
      // The old configuration stays in force; the log names the key that is wrong.
      log.error({ key: error.key, file, via: trigger.via }, `config reload failed, keeping the running configuration: ${error.message}`);
      await emit('config.reload_failed', trigger, { file, error });
      return { ok: false, file, error };
    }
    const restart: { key: string; why: string }[] = [];
    const applied: string[] = [];
    const before = digest(current);
    next = effective(current, next, restart, applied);
    // A reload never moves the data directory (the audit log, keys and recordings are open there); a file
    // that now names another one is said so, not silently ignored.
    if (fileDataDir !== undefined && fileDataDir !== (startFileDataDir ?? services.dataDir)) {
      restart.push({ key: 'data_dir', why: `data_dir in the file is now ${fileDataDir}, the gateway keeps using ${services.dataDir} (a reload never moves it); restart the gateway to apply` });
    }
    const report: ReloadReport = {
      ok: true,
      file,
      digest: { old: before, new: digest(next) },
      targets: diffNamed(current.targets, next.targets, (t) => `${t.protocol}/${t.name}`),
      roles: diffNamed(current.roles, next.roles),
      alerts: diffNamed(current.alerts, next.alerts),
      applied,
      restart_required: restart,
      sessions_cut: [],
    };

    // Everything that can fail is built before the swap: a reload either applies whole or not at all (the
    // old configuration stays in force, config.reload_failed says why, the workers are not told).
    let built: Awaited<ReturnType<typeof buildServices>>;
    try {
      built = await buildServices(next, applied);
    } catch (e) {
      const error = { code: 'VIGIL_CONFIG_RELOAD_FAILED', key: '', message: `could not apply the new configuration, keeping the running one: ${(e as Error).message}` };
      log.error({ err: (e as Error).message, file, via: trigger.via }, error.message);
      await emit('config.reload_failed', trigger, { file, error });
      return { ok: false, file, error };
    }
    // CA material too: after `vigil ca rotate` new certificates are signed by the new CA from here on. The
    // identity service is handed `next`: it holds its own reference to the configuration, and `certs`
    // (TTL limits, clock skew) is reported applied, so it must apply to the next issuance, here and in workers.
    await services.identity.refresh(next).catch((e) => log.error({ err: (e as Error).message }, 'could not re-read the CA material; keeping the loaded one'));
    const previousAlerts = services.alerts;
    // Swap in one synchronous step, and list the live sessions in the same step: a session registered
    // before it is in that list, one admitted under the old configuration and registered after it sees the
    // generation changed and is authorized again (openSession).
    services.config = next;
    services.targets = built.targets;
    services.authz = built.authz;
    services.configGeneration = (services.configGeneration ?? 0) + 1;
    if (applied.includes('log')) log.level = next.log.level;
    // Sessions take their guardrails when admitted: new sessions get the new rules, live ones keep theirs.
    if (applied.includes('guardrails')) services.guardrails = built.guardrails;
    if (built.alerts !== 'unchanged') services.alerts = built.alerts;
    const live = services.sessions.list();
    // The new alert service (if any) already took the event stream over and stops the old one itself.
    if (built.alerts === undefined) await previousAlerts?.stop().catch((e) => log.warn({ err: e }, 'alerts stop failed'));

    // Live sessions: asked again, exactly as at connect time, against the new roles and targets.
    // A follower (worker) checks its own sessions too: one may have been registered after the primary
    // listed them (the primary hears of it over IPC) yet before this worker swapped. A session cut by both
    // ends once (its handle keeps the first reason).
    for (const s of live) {
      let decision;
      try {
        decision = await services.authz.authorize({ principal: s.principal, target: s.target.name, protocol: s.protocol, login: s.target.login, database: s.target.database });
      } catch (e) {
        log.error({ err: e, session: s.id }, 'authorizer failed during reload; the session keeps running');
        continue;
      }
      if (decision.allow) continue;
      const handle = services.sessions.get(s.id);
      if (!handle || handle.endReason) continue;
      handle.terminate('config_reload', CONFIG_RELOAD_MESSAGE);
      report.sessions_cut!.push({ id: s.id, user: s.principal.user, target: s.target.name, protocol: s.protocol, reason: decision.reason });
      log.info({ session: s.id, user: s.principal.user, target: s.target.name, reason: decision.reason }, 'ending live session: no longer allowed by the reloaded configuration');
    }
    for (const r of restart) log.warn({ key: r.key }, `config reload: ${r.why}`);
    log.info({ targets: report.targets, roles: report.roles, applied, sessions_cut: report.sessions_cut!.length }, 'configuration reloaded');
    const { ok: _ok, ...details } = report;
    await emit('config.reloaded', trigger, details);
    return report;
  }

  return {
    reload(trigger, next) {
      const p = chain.then(() => run(trigger, next));
      chain = p.catch(() => {});
      return p;
    },
  };
}
