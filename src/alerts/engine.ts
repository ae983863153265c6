import type { Logger } from 'pino';
import type { EventBus } from '../events/bus.ts';
import type { AuditEvent } from '../events/envelope.ts';
import { EVENT_CATALOG } from '../events/catalog.ts';
import { classifySql, loadSqlParsers } from '../../recorder/reports/classify-sql.ts';
import type { AlertRuleConfig, DetailCondition } from './config.ts';
import { SlidingWindow, eventTimeUs } from './window.ts';
import { formatTime } from '../events/envelope.ts';
import type { FiredGroupMemory } from './fired-groups.ts';

/** One firing of a rule, as recorded in `alert.fired` and sent to the notifiers. */
export interface Firing {
  rule: string;
  /** The group_by fields and their values for this firing ({} without group_by). */
  group: Record<string, string>;
  count: number;
  threshold: number;
  window_ms: number;
  /** The events in the window that made the rule fire, oldest first. */
  event_ids: string[];
  notify: string[];
  /** Time of the event that completed the threshold. */
  time: string;
}

/** A group that fired and then stayed quiet for a whole window. */
export interface Resolution {
  rule: string;
  group: Record<string, string>;
  window_ms: number;
  notify: string[];
  /** The `alert.fired` firings this resolution closes are those of the same rule and group. */
  last_event_time_us: number;
}

export interface EngineOptions {
  /** Labels of a target in the config (for match.target_labels). */
  labelsOf(target: AuditEvent['target']): Record<string, string> | undefined;
  /** Called for each firing, in order; the engine waits for it before evaluating further events. */
  onFire(f: Firing): Promise<void>;
  /** Called once a group that fired has had no matching event for a whole window (PagerDuty resolve). */
  onResolve?(r: Resolution): Promise<void>;
  /** Events evaluated per setImmediate turn (default 256): the event loop stays responsive. */
  batch?: number;
  /** Where `first_in` rules keep last-seen times across restarts (default: memory only). */
  seen?: SeenMemory;
  /** Where groups that fired and await resolution are kept across restarts (default: memory only). */
  fired?: FiredGroupMemory;
  /** Where a firing or resolution that could not be recorded is reported (never dropped silently). */
  log?: Pick<Logger, 'error'>;
}

/** Last time (µs) a group of a `first_in` rule matched. */
export interface SeenMemory {
  get(rule: string, key: string): number | undefined;
  set(rule: string, key: string, timeUs: number): void;
}

/** What the engine learned from a session.start: the session's admission and the start event. */
interface SessionFacts {
  viaGrant: boolean;
}

/** A session a `longer_than` rule waits on: it fires at deadlineUs unless the session ended before. */
interface LongSession {
  deadlineUs: number;
  group: Record<string, string>;
  startId: string;
}

interface CompiledRule {
  cfg: AlertRuleConfig;
  test(e: AuditEvent): boolean;
  /** match.command, when the rule has one: tested by test() against details.command or details.sql. */
  command?: RegExp;
  /** match.target / match.target_labels, when the rule has them. Not part of test(): see rulesFor. */
  targetOk?: (t: AuditEvent['target']) => boolean;
  windows: Map<string, SlidingWindow>;
  windowUs: number;
  /** Quiet windows are cleaned up once there are more than this many (see count). */
  pruneAbove: number;
  /**
   * Groups that fired and are not resolved yet: their group values and newest matching event time, and the
   * time last saved to EngineOptions.fired.
   */
  active: Map<string, { group: Record<string, string>; lastUs: number; savedUs?: number }>;
  /** The rule's definition as saved with its fired groups: a changed rule does not resolve the old one's. */
  definition: string;
  /** longer_than rules: open sessions by session id. */
  long: Map<string, LongSession>;
  /** first_in rules: last-seen times by group key (a cache of SeenMemory). */
  lastSeen: Map<string, number>;
}

/** Groups a rule keeps windows for before quiet ones are cleaned up. */
const MIN_PRUNE_ABOVE = 1024;

const asSet = (v: string[] | undefined) => (v ? new Set(v) : undefined);

/** The value of a dotted envelope path (`actor.user`, `details.sql`) as a string. */
function fieldOf(e: AuditEvent, path: string): string {
  let v: unknown = e;
  for (const k of path.split('.')) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
  if (v === undefined || v === null) return '';
  return Array.isArray(v) ? v.join(',') : String(v);
}

/** A test for one details value; numbers compare as numbers (a numeric string counts as its number). */
function detailTest(c: DetailCondition): (v: unknown) => boolean {
  if (typeof c !== 'object') return (v) => v === c || (v !== undefined && v !== null && String(v) === String(c));
  const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : undefined);
  const same = (v: unknown, x: string | number | boolean) => v === x || (v !== undefined && v !== null && String(v) === String(x));
  const re = c.regex !== undefined ? new RegExp(c.regex, 'i') : undefined;
  const anyOf = c.in;
  return (v) => {
    if (v === undefined || v === null) return false;
    if (c.eq !== undefined && !same(v, c.eq)) return false;
    if (c.ne !== undefined && same(v, c.ne)) return false;
    if (anyOf && !anyOf.some((x) => same(v, x))) return false;
    if (re && !re.test(typeof v === 'string' ? v : JSON.stringify(v))) return false;
    if (c.gt !== undefined || c.gte !== undefined || c.lt !== undefined || c.lte !== undefined) {
      const n = num(v);
      if (n === undefined) return false;
      if (c.gt !== undefined && !(n > c.gt)) return false;
      if (c.gte !== undefined && !(n >= c.gte)) return false;
      if (c.lt !== undefined && !(n < c.lt)) return false;
      if (c.lte !== undefined && !(n <= c.lte)) return false;
    }
    return true;
  };
}

function groupOf(rule: CompiledRule, e: AuditEvent): Record<string, string> {
  const group: Record<string, string> = {};
  for (const f of rule.cfg.group_by) group[f] = fieldOf(e, f);
  return group;
}

function compile(cfg: AlertRuleConfig, labelsOf: EngineOptions['labelsOf'], viaGrantOf: (e: AuditEvent) => boolean): CompiledRule {
  const m = cfg.match;
  const users = asSet(m.user);
  const roles = asSet(m.role);
  const targets = asSet(m.target);
  const outcomes = asSet(m.outcome);
  const classes = asSet(m.statement_class);
  const command = m.command ? new RegExp(m.command, 'i') : undefined;
  const labels = m.target_labels ? Object.entries(m.target_labels) : undefined;
  const details = m.details ? Object.entries(m.details).map(([k, c]) => [k, detailTest(c)] as const) : undefined;
  const viaGrant = m.via_grant;
  // The target conditions hold or not for a whole session, which passes the same target object with each
  // event: the engine decides them once per target object and event type (rulesFor), not here.
  const targetOk = targets || labels
    ? (t: AuditEvent['target']): boolean => {
        const have = labels ? labelsOf(t) : undefined;
        return (!targets || targets.has(t.name)) && (!labels || (!!have && labels.every(([k, v]) => have[k] === v)));
      }
    : undefined;
  // Cheap checks first; the SQL parser runs last and only for events every other condition accepted.
  const test = (e: AuditEvent): boolean => {
    if (users && !users.has(e.actor.user)) return false;
    if (roles && !e.actor.roles.some((r) => roles.has(r))) return false;
    if (outcomes && !outcomes.has(e.outcome)) return false;
    if (details && !details.every(([k, t]) => t(e.details[k]))) return false;
    if (viaGrant !== undefined && viaGrantOf(e) !== viaGrant) return false;
    if (command) {
      const text = commandText(e);
      if (text === undefined || !command.test(text)) return false;
    }
    if (classes) {
      if (typeof e.details.sql !== 'string') return false;
      if (!classes.has(classifySql(e.target.protocol, e.details.sql).class)) return false;
    }
    return true;
  };
  return { cfg, test, command, targetOk, windows: new Map(), windowUs: cfg.window * 1000, pruneAbove: MIN_PRUNE_ABOVE, active: new Map(), definition: JSON.stringify(cfg), long: new Map(), lastSeen: new Map() };
}

/** The text match.command is tested against. */
function commandText(e: AuditEvent): string | undefined {
  return typeof e.details.command === 'string' ? e.details.command : typeof e.details.sql === 'string' ? e.details.sql : undefined;
}

/** One regex that matches a text exactly when at least one of `rules`' command regexes does. */
interface CommandPrefilter {
  any: RegExp;
  rules: Set<CompiledRule>;
}

/**
 * Rules with a command regex each scan the statement; most statements match none of them. One alternation
 * of all of them scans it once, and when it finds nothing, every one of those rules is false without running.
 * Patterns whose meaning would change inside a larger regex are left to run on their own: backreferences
 * (`\1` would point at another pattern's group, or become an octal escape) and named groups (two rules
 * may use the same name).
 */
function commandPrefilter(rules: CompiledRule[]): CommandPrefilter | undefined {
  const combinable = rules.filter((r) => r.command && r.command.flags === 'i' && !/\\[1-9k]|\(\?<[^=!]/.test(r.command.source));
  if (combinable.length < 2) return undefined;
  try {
    return { any: new RegExp(combinable.map((r) => `(?:${r.command!.source})`).join('|'), 'i'), rules: new Set(combinable) };
  } catch {
    return undefined;
  }
}

/**
 * Evaluates alert rules over the event bus. The subscriber on the bus only finds the rules that could
 * match (by event type, then by target, then one scan of the statement for all command regexes at once)
 * and queues the event with them; most events of a busy session have none and are never queued. Matching,
 * SQL classification and windows run later in setImmediate batches, so the proxies that record events never
 * wait for rules. `alert.fired` events are never evaluated (a rule cannot trigger on its own firings).
 */
export class AlertEngine {
  private readonly byType = new Map<string, CompiledRule[]>();
  private readonly prefilters = new Map<string, CommandPrefilter>();
  /** By event type: the rules whose target conditions hold for a target object (see rulesFor). */
  private readonly byTarget = new Map<string, WeakMap<object, CompiledRule[]>>();
  private queue: AuditEvent[] = [];
  /** The candidate rules of each queued event (same index). */
  private queueRules: CompiledRule[][] = [];
  private scheduled = false;
  private running: Promise<void> | undefined;
  private unsubscribe: (() => void) | undefined;
  private idleWaiters: (() => void)[] = [];
  readonly fired = new Map<string, number>();
  /** Sessions whose start the engine saw (only kept when a rule needs them: via_grant, longer_than). */
  private readonly sessions = new Map<string, SessionFacts>();
  private readonly tracksSessions: boolean;
  private readonly longRules: CompiledRule[] = [];
  private longTimer: NodeJS.Timeout | undefined;

  constructor(rules: AlertRuleConfig[], private readonly opts: EngineOptions) {
    // The engine's own events are never evaluated: a rule cannot feed on firings or resolutions.
    const types = Object.keys(EVENT_CATALOG).filter((t) => !t.startsWith('alert.'));
    this.tracksSessions = rules.some((r) => r.match.via_grant !== undefined || r.longer_than !== undefined);
    const viaGrantOf = (e: AuditEvent): boolean => {
      const ids = e.details.grant_ids;
      if (Array.isArray(ids)) return ids.length > 0;
      // A session whose start was not seen counts as standing access: a rule about access outside a grant
      // errs towards firing.
      return (e.session_id !== undefined && this.sessions.get(e.session_id)?.viaGrant) || false;
    };
    for (const cfg of rules) {
      const rule = compile(cfg, opts.labelsOf, viaGrantOf);
      if (cfg.longer_than !== undefined) this.longRules.push(rule);
      this.fired.set(cfg.name, 0);
      for (const t of cfg.match.type) {
        const matching = t.endsWith('.*') ? types.filter((k) => k.startsWith(t.slice(0, -1))) : types.filter((k) => k === t);
        for (const k of matching) {
          const list = this.byType.get(k) ?? [];
          if (!list.includes(rule)) list.push(rule);
          this.byType.set(k, list);
        }
      }
    }
    for (const [type, list] of this.byType) {
      const p = commandPrefilter(list);
      if (p) this.prefilters.set(type, p);
    }
  }

  /**
   * Carry on from the engine a config reload replaces (detached and settled, so it sees no more events):
   * a rule whose definition did not change keeps its counting windows, its fired groups (so they still
   * resolve), its open longer_than sessions and first_in memory; a changed or new rule starts afresh.
   * Firing counts carry on for every rule still configured (Prometheus counters never go back), and so do
   * the sessions seen starting (via_grant). start(bus, previous) calls it at the right moment.
   */
  private adopt(previous: AlertEngine): void {
    const before = new Map(previous.rules().map((r) => [r.cfg.name, r]));
    for (const rule of this.rules()) {
      const old = before.get(rule.cfg.name);
      if (!old) continue;
      this.fired.set(rule.cfg.name, (previous.fired.get(rule.cfg.name) ?? 0) + (this.fired.get(rule.cfg.name) ?? 0));
      if (JSON.stringify(old.cfg) !== JSON.stringify(rule.cfg)) continue;
      rule.windows = old.windows;
      rule.active = old.active;
      rule.long = old.long;
      rule.lastSeen = old.lastSeen;
    }
    if (this.tracksSessions) for (const [id, f] of previous.sessions) this.sessions.set(id, f);
  }

  /**
   * Start listening. Loads the SQL parsers first when a rule needs them. With `previous` (the engine a
   * config reload replaces, still running) the bus is handed over without a gap: in one synchronous step
   * the previous engine stops listening and this one starts, so every event reaches exactly one of them.
   * This engine holds what it receives until the previous one has evaluated everything it had queued,
   * then adopts its state and evaluates the held events in order: none is lost or counted twice.
   */
  async start(bus: EventBus, previous?: AlertEngine): Promise<void> {
    if ([...this.byType.values()].some((rs) => rs.some((r) => r.cfg.match.statement_class))) await loadSqlParsers();
    // Fired groups of a previous run (a restart): still resolved once quiet for a window.
    const fired = this.opts.fired;
    if (fired) for (const rule of this.rules()) for (const [key, g] of fired.load(rule.cfg.name, rule.definition)) rule.active.set(key, { ...g, savedUs: g.lastUs });
    if (previous) {
      this.held = true;
      previous.detach();
    }
    this.unsubscribe = bus.subscribe(this.onEvent);
    if (previous) {
      await previous.settled();
      this.adopt(previous);
      this.held = false;
      if (this.scheduled) setImmediate(this.drain);
    }
    fired?.prune(new Map(this.rules().map((r) => [r.cfg.name, r.definition])));
    if (this.longRules.length) {
      const every = Math.min(1000, Math.max(50, Math.min(...this.longRules.map((r) => r.cfg.longer_than!)) / 4));
      this.longTimer = setInterval(() => this.track(this.checkLong(Date.now() * 1000)), every);
      this.longTimer.unref();
    }
    const rules = this.rules();
    if (rules.length && this.opts.onResolve) {
      // Often enough that a resolution follows its window's end closely, never more than once per 50 ms.
      const every = Math.min(1000, Math.max(50, Math.min(...rules.map((r) => r.cfg.window)) / 4));
      this.sweeper = setInterval(() => this.track(this.sweep(Date.now() * 1000)), every);
      this.sweeper.unref();
    }
  }

  private sweeper: NodeJS.Timeout | undefined;
  private sweeping = false;
  /** Received events wait (queued, not evaluated) until the state of the engine replaced is adopted. */
  private held = false;
  /** Sweeps and longer_than checks under way (a successor adopts the state only once they are done). */
  private readonly timerWork = new Set<Promise<void>>();

  private track(work: Promise<void>): void {
    this.timerWork.add(work);
    void work.finally(() => this.timerWork.delete(work));
  }

  /** Stop listening and stop the timers, at once (the successor subscribes in the same tick). */
  private detach(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    if (this.longTimer) clearInterval(this.longTimer);
    this.sweeper = this.longTimer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  /** Every queued event evaluated and every sweep finished: the state no longer moves. */
  private async settled(): Promise<void> {
    await this.idle();
    await Promise.allSettled([...this.timerWork]);
  }

  private rules(): CompiledRule[] {
    return [...new Set([...this.byType.values()].flat())];
  }

  /** Resolve groups whose newest matching event is at least one window old at `nowUs`. */
  private async sweep(nowUs: number): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      for (const rule of this.rules()) {
        const unrecorded: [string, { group: Record<string, string>; lastUs: number }][] = [];
        for (const [key, a] of rule.active) {
          if (a.lastUs > nowUs - rule.windowUs) continue;
          rule.active.delete(key);
          const resolved = await this.opts.onResolve!({ rule: rule.cfg.name, group: a.group, window_ms: rule.cfg.window, notify: rule.cfg.notify, last_event_time_us: a.lastUs }).then(
            () => true,
            (e: unknown) => {
              unrecorded.push([key, a]);
              this.failed('resolution', rule.cfg.name, a.group, e);
              return false;
            },
          );
          if (resolved && !rule.active.has(key)) this.persist(() => this.opts.fired?.forget(rule.cfg.name, key));
        }
        // Not recorded (audit log away): the group stays active, so a later sweep resolves it again (put
        // back after the loop: an entry added while iterating would be visited again at once).
        for (const [key, a] of unrecorded) if (!rule.active.has(key)) rule.active.set(key, a);
      }
    } finally {
      this.sweeping = false;
    }
  }

  /** Fire for sessions of longer_than rules that are still open at `nowUs` past their deadline. */
  private async checkLong(nowUs: number): Promise<void> {
    for (const rule of this.longRules) {
      for (const [sid, s] of rule.long) {
        if (s.deadlineUs > nowUs) continue;
        rule.long.delete(sid);
        this.fired.set(rule.cfg.name, (this.fired.get(rule.cfg.name) ?? 0) + 1);
        const ms = Math.floor(nowUs / 1000);
        await this.opts
          .onFire({ rule: rule.cfg.name, group: s.group, count: 1, threshold: 1, window_ms: rule.cfg.longer_than!, event_ids: [s.startId], notify: rule.cfg.notify, time: formatTime(new Date(ms), nowUs % 1000) })
          .catch((e: unknown) => this.failed('firing', rule.cfg.name, s.group, e));
      }
    }
  }

  /** A firing or resolution the gateway could not record (its notifications are queued by onFire itself). */
  private failed(what: 'firing' | 'resolution', rule: string, group: Record<string, string>, e: unknown): void {
    this.opts.log?.error({ rule, group, err: e instanceof Error ? e.message : String(e) }, `alerts: a ${what} could not be recorded`);
  }

  /** Session facts learned from session.start / forgotten at session.end, before and after the rules see them. */
  private trackStart(e: AuditEvent): void {
    if (e.type !== 'session.start' || !e.session_id) return;
    const ids = e.details.grant_ids;
    this.sessions.set(e.session_id, { viaGrant: Array.isArray(ids) && ids.length > 0 });
    // A gateway killed without session.end leaves entries; bounded all the same.
    if (this.sessions.size > 200_000) this.sessions.delete(this.sessions.keys().next().value!);
  }

  private trackEnd(e: AuditEvent): void {
    if (e.type !== 'session.end' || !e.session_id) return;
    this.sessions.delete(e.session_id);
    for (const r of this.longRules) r.long.delete(e.session_id);
  }

  private readonly onEvent = (e: AuditEvent): void => {
    const candidates = this.candidates(e);
    if (candidates.length === 0 && !(this.tracksSessions && (e.type === 'session.start' || e.type === 'session.end'))) return;
    this.queue.push(e);
    this.queueRules.push(candidates);
    if (!this.scheduled) {
      this.scheduled = true;
      if (!this.held) setImmediate(this.drain);
    }
  };

  private readonly drain = (): void => {
    this.running = this.process().finally(() => {
      this.running = undefined;
      if (this.queue.length) setImmediate(this.drain);
      else {
        this.scheduled = false;
        for (const w of this.idleWaiters.splice(0)) w();
      }
    });
  };

  private async process(): Promise<void> {
    const n = Math.min(this.queue.length, this.opts.batch ?? 256);
    const batch = this.queue.splice(0, n);
    const batchRules = this.queueRules.splice(0, n);
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!;
      if (this.tracksSessions) this.trackStart(e);
      for (const rule of batchRules[i]!) {
        let ok = false;
        try {
          ok = rule.test(e);
        } catch {
          ok = false;
        }
        if (!ok) continue;
        if (rule.cfg.longer_than !== undefined) {
          if (e.session_id) rule.long.set(e.session_id, { deadlineUs: eventTimeUs(e.time) + rule.cfg.longer_than * 1000, group: groupOf(rule, e), startId: e.id });
          continue;
        }
        const firing = rule.cfg.first_in !== undefined ? this.firstIn(rule, e) : this.count(rule, e);
        if (firing) {
          this.fired.set(rule.cfg.name, (this.fired.get(rule.cfg.name) ?? 0) + 1);
          await this.opts.onFire(firing).catch((e: unknown) => this.failed('firing', rule.cfg.name, firing.group, e));
        }
      }
      if (this.tracksSessions) this.trackEnd(e);
    }
  }

  /** The rules that could match `e`: of its type, holding for its target, and past the command prefilter. */
  private candidates(e: AuditEvent): CompiledRule[] {
    const rules = this.rulesFor(e);
    if (rules.length === 0) return rules;
    const prefilter = this.prefilters.get(e.type);
    if (!prefilter) return rules;
    const text = commandText(e);
    let hit = false;
    try {
      hit = text !== undefined && prefilter.any.test(text);
    } catch {
      hit = true; // let each rule decide on its own
    }
    return hit ? rules : this.withoutPrefiltered(rules, prefilter);
  }

  /** `rules` without those the prefilter excluded, cached per target object like rulesFor. */
  private readonly unprefiltered = new WeakMap<CompiledRule[], CompiledRule[]>();
  private withoutPrefiltered(rules: CompiledRule[], prefilter: CommandPrefilter): CompiledRule[] {
    let rest = this.unprefiltered.get(rules);
    if (!rest) this.unprefiltered.set(rules, (rest = rules.filter((r) => !prefilter.rules.has(r))));
    return rest;
  }

  /**
   * The rules of the event's type whose target conditions hold for its target. A session's events share one
   * target object, so for a busy session this is one lookup per event instead of a target check per rule.
   */
  private rulesFor(e: AuditEvent): CompiledRule[] {
    const all = this.byType.get(e.type);
    if (!all) return [];
    let perTarget = this.byTarget.get(e.type);
    if (!perTarget) this.byTarget.set(e.type, (perTarget = new WeakMap()));
    let rules = perTarget.get(e.target);
    if (!rules) {
      const t = e.target;
      rules = all.filter((r) => {
        try {
          return !r.targetOk || r.targetOk(t);
        } catch {
          return false;
        }
      });
      perTarget.set(t, rules);
    }
    return rules;
  }

  /** first_in: a firing when the group's previous matching event is at least first_in old, or none. */
  private firstIn(rule: CompiledRule, e: AuditEvent): Firing | undefined {
    const group = groupOf(rule, e);
    const key = JSON.stringify(rule.cfg.group_by.map((f) => group[f]));
    const t = eventTimeUs(e.time);
    const spanUs = rule.cfg.first_in! * 1000;
    let last = rule.lastSeen.get(key);
    if (last === undefined) last = this.opts.seen?.get(rule.cfg.name, key);
    // Stored again only once it moved by 1% of the span (at most a minute): one write per group and
    // minute at most, and a last-seen time that is never off by more than that.
    if (last === undefined || t - last >= Math.min(spanUs / 100, 60_000_000)) this.opts.seen?.set(rule.cfg.name, key, t);
    if (last === undefined || t > last) rule.lastSeen.set(key, t);
    if (rule.lastSeen.size > 100_000) rule.lastSeen.delete(rule.lastSeen.keys().next().value!);
    if (last !== undefined && t - last < spanUs) return undefined;
    return { rule: rule.cfg.name, group, count: 1, threshold: 1, window_ms: rule.cfg.first_in!, event_ids: [e.id], notify: rule.cfg.notify, time: e.time };
  }

  /** Add a matching event to its group's window; a firing when the count reaches the threshold. */
  private count(rule: CompiledRule, e: AuditEvent): Firing | undefined {
    const group = groupOf(rule, e);
    const key = rule.cfg.group_by.length ? JSON.stringify(rule.cfg.group_by.map((f) => group[f])) : '';
    let w = rule.windows.get(key);
    if (!w) rule.windows.set(key, (w = new SlidingWindow(rule.windowUs)));
    const t = eventTimeUs(e.time);
    const n = w.add(t, e.id);
    const active = rule.active.get(key);
    if (active && t > active.lastUs) {
      active.lastUs = t;
      // Saved once it moved by a tenth of the window: after a restart the group resolves at most that early.
      if (t - (active.savedUs ?? 0) >= rule.windowUs / 10) this.save(rule, key, active);
    }
    if (rule.windows.size > rule.pruneAbove) this.pruneQuiet(rule, t);
    if (n < rule.cfg.threshold) return undefined;
    const ids = w.eventIds();
    // A late event can complete the threshold: the group resolves a window after its latest event.
    const latestUs = w.latest!;
    w.clear();
    const fired = { group, lastUs: Math.max(latestUs, active?.lastUs ?? 0) };
    rule.active.set(key, fired);
    this.save(rule, key, fired);
    return { rule: rule.cfg.name, group, count: n, threshold: rule.cfg.threshold, window_ms: rule.cfg.window, event_ids: ids, notify: rule.cfg.notify, time: e.time };
  }

  private save(rule: CompiledRule, key: string, a: { group: Record<string, string>; lastUs: number; savedUs?: number }): void {
    if (!this.opts.fired) return;
    this.persist(() => this.opts.fired!.save(rule.cfg.name, rule.definition, key, a));
    a.savedUs = a.lastUs;
  }

  /** The fired-group memory serves resolutions only: a failing state.db never stops evaluation. */
  private persist(write: () => void): void {
    try {
      write();
    } catch (e) {
      this.opts.log?.error({ err: e instanceof Error ? e.message : String(e) }, 'alerts: could not save a fired group for its resolution after a restart');
    }
  }

  /**
   * Forget groups whose latest event is at least a window older than `nowUs`, so memory follows the active
   * groups; a window with an event still inside stays. The next clean-up waits until the groups kept have
   * doubled, so with many live groups its cost is spread over as many events as it visits windows.
   */
  private pruneQuiet(rule: CompiledRule, nowUs: number): void {
    const edge = nowUs - rule.windowUs;
    for (const [k, w] of rule.windows) if (w.latest! <= edge) rule.windows.delete(k);
    rule.pruneAbove = Math.max(MIN_PRUNE_ABOVE, 2 * rule.windows.size);
  }

  /** Resolves once every queued event has been evaluated (tests, shutdown). */
  idle(): Promise<void> {
    if (!this.scheduled && !this.running) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Events waiting for evaluation. */
  get pending(): number {
    return this.queue.length;
  }

  async stop(): Promise<void> {
    this.detach();
    await this.settled();
  }
}
