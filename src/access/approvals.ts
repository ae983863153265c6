import type { Logger } from 'pino';
import type { AccessRecord, StateStore } from '../store/types.ts';
import type { EventBus } from '../events/bus.ts';
import type { EventType } from '../events/catalog.ts';
import { LOCAL_SOURCE, SYSTEM_ACTOR } from '../events/envelope.ts';
import type { AccessConfig } from '../authz/config.ts';
import type { OutboxStore } from '../notifiers/outbox.ts';
import type { Dispatcher } from '../notifiers/dispatcher.ts';
import type { AccessNotification } from '../notifiers/access-format.ts';
import { formatDuration } from './service.ts';
import type { LinkStore } from './links.ts';

/**
 * Brings pending access requests to the approvers: each new request goes to `access.approvals.notify` with
 * one-time approve/deny links, a reminder follows after `remind_after`, an escalation to `escalate_to`
 * after `escalate_after`, and the decision is posted back. Driven by a sweep over the state store rather
 * than by the gateway's own events, so requests filed by CLI processes are seen too and a restart picks up
 * where the last run stopped. Each step is claimed in the request's record (one atomic update), so it
 * happens once whatever number of gateways sweep, and is recorded before anything is queued to a notifier.
 */

export type ApprovalsConfig = AccessConfig['approvals'];

/** Progress of a request's notifications, kept in its record (`told`: notifiers the decision goes back to). */
export type NotifyProgress = NonNullable<AccessRecord['notify']>;

type Step = 'notified' | 'reminded' | 'escalated' | 'progress_notified' | 'decision_notified';

export interface ApprovalsDeps {
  /** Read at each sweep: a config reload may change it (startApprovals passes a getter). */
  config: ApprovalsConfig;
  store: StateStore;
  events: EventBus;
  links: LinkStore;
  outbox: OutboxStore;
  dispatcher: Dispatcher;
  /** `https://host:port` the links start with. */
  linkBase: string;
  log: Logger;
  now?: () => number;
}

class NotDue extends Error {}

const progressOf = (r: AccessRecord): NotifyProgress => r.notify ?? {};

export class Approvals {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  /** Requests told about and not yet decided-and-posted: checked each sweep (others need no look). */
  private readonly open = new Set<string>();
  private scannedAll = false;
  private readonly now: () => number;

  constructor(private readonly d: ApprovalsDeps) {
    this.now = d.now ?? Date.now;
  }

  /** Sweep now and then every `intervalMs` (small enough for the shortest reminder/escalation delay). */
  start(): void {
    const tick = () => {
      this.running = this.sweep()
        .catch((e) => this.d.log.error({ err: e }, 'approvals: sweep failed'))
        .finally(() => {
          this.running = undefined;
          if (this.timer !== undefined) this.timer = setTimeout(tick, this.interval());
        });
    };
    this.timer = setTimeout(tick, 0);
  }

  /** Recomputed each time: a config reload may shorten the reminder or escalation delay. */
  private interval(): number {
    const delays = [this.d.config.remind_after, this.d.config.escalate_after].filter((x): x is number => x !== undefined);
    return Math.max(50, Math.min(1000, ...delays.map((x) => x / 4)));
  }

  async stop(): Promise<void> {
    const t = this.timer;
    this.timer = undefined;
    if (t) clearTimeout(t);
    await this.running;
  }

  /** One pass: new requests, reminders, escalations, decisions. */
  async sweep(): Promise<void> {
    const cfg = this.d.config;
    const now = this.now();
    // After a restart every request may have something due; afterwards only pending ones and those we told.
    const candidates = this.scannedAll ? await this.d.store.listAccess({ state: 'pending' }) : await this.d.store.listAccess();
    this.scannedAll = true;
    const ids = new Set([...candidates.map((r) => r.id), ...this.open]);
    for (const id of ids) {
      const r = candidates.find((c) => c.id === id) ?? (await this.d.store.getAccess(id));
      if (!r) {
        this.open.delete(id);
        continue;
      }
      const p = progressOf(r);
      const pending = r.state === 'pending' && Date.parse(r.requestExpiresAt) > now;
      if (pending) {
        const age = now - Date.parse(r.createdAt);
        if (!p.notifiedAt) await this.step(r, 'notified', cfg.notify);
        // Approved by some, needing more (approvals_required > 1): the used approve link is gone, so the
        // others get fresh links right away instead of waiting for the reminder.
        else if (r.approvals.length > (p.approvalsTold ?? 0)) await this.step(r, 'progress_notified', cfg.notify);
        else if (cfg.remind_after !== undefined && !p.remindedAt && age >= cfg.remind_after) await this.step(r, 'reminded', cfg.notify);
        const q = progressOf(r); // r carries what this pass claimed
        if (cfg.escalate_after !== undefined && cfg.escalate_to.length && q.notifiedAt && !q.escalatedAt && age >= cfg.escalate_after) {
          await this.step(r, 'escalated', cfg.escalate_to);
        }
        this.open.add(id);
      } else if (p.notifiedAt && !p.decisionNotifiedAt && r.state !== 'pending') {
        await this.step(r, 'decision_notified', p.told ?? cfg.notify);
        this.open.delete(id);
      } else if (!p.notifiedAt || p.decisionNotifiedAt) {
        this.open.delete(id);
      }
      // A pending request past its window is left to the expiry sweep; its decision (expired) is posted next time.
    }
  }

  private async step(r: AccessRecord, step: Step, notifiers: string[]): Promise<void> {
    if (!notifiers.length) return;
    const now = this.now();
    const field = ({ notified: 'notifiedAt', reminded: 'remindedAt', escalated: 'escalatedAt', progress_notified: undefined, decision_notified: 'decisionNotifiedAt' } as const)[step];
    let rec: AccessRecord;
    // What the claim replaced, so that handing it back (the message not recorded, so not sent) restores it.
    let toldBefore: number | undefined;
    try {
      rec = await this.d.store.updateAccess(r.id, (cur) => {
        const p = progressOf(cur);
        toldBefore = p.approvalsTold;
        if (field ? p[field] : (p.approvalsTold ?? 0) >= cur.approvals.length) throw new NotDue();
        if (step !== 'decision_notified' && cur.state !== 'pending') throw new NotDue();
        const told = [...new Set([...(p.told ?? []), ...(step === 'decision_notified' ? [] : notifiers)])];
        const claimed = field ? { [field]: new Date(now).toISOString() } : {};
        // Approvals already present when a message goes out are in it: no separate progress message for them.
        return { ...cur, notify: { ...p, ...claimed, told, approvalsTold: cur.approvals.length } };
      });
    } catch (e) {
      if (e instanceof NotDue) return; // another gateway did it, or the request was decided meanwhile
      throw e;
    }
    Object.assign(r, rec);

    const action = ({ notified: 'request', reminded: 'reminder', escalated: 'escalation', progress_notified: 'progress', decision_notified: 'decision' } as const)[step];
    const n: AccessNotification = {
      kind: 'access',
      action,
      request_id: rec.id,
      reason: rec.reason,
      requester: rec.requester ?? rec.user,
      beneficiary: rec.beneficiary ?? rec.user,
      role: rec.role,
      targets: rec.targets,
      duration: formatDuration(rec.ttlMs),
      ttl_ms: rec.ttlMs,
      request_expires_at: rec.requestExpiresAt,
      approvals: rec.approvals.map((a) => a.by),
      time: new Date(now).toISOString(),
    };
    const linkIds: string[] = [];
    if (action !== 'decision') {
      // Fresh links with every message: a link never outlives the request's decision window.
      const expiresAt = Math.min(now + this.d.config.link_ttl, Date.parse(rec.requestExpiresAt));
      const approve = await this.d.links.mint(rec.id, 'approve', expiresAt, now);
      const deny = await this.d.links.mint(rec.id, 'deny', expiresAt, now);
      n.approve_url = `${this.d.linkBase}/v1/access/links/${approve.token}`;
      n.deny_url = `${this.d.linkBase}/v1/access/links/${deny.token}`;
      n.links_expire_at = new Date(expiresAt).toISOString();
      linkIds.push(approve.id, deny.id);
    } else {
      n.decision = { state: rec.state === 'expired' && !rec.grantedAt ? 'expired' : rec.state, by: rec.decidedBy, reason: rec.state === 'denied' ? rec.decisionReason : undefined };
    }

    const details: Record<string, unknown> = {
      request_id: rec.id,
      requester: n.requester,
      beneficiary: n.beneficiary,
      user: rec.user,
      role: rec.role,
      targets: rec.targets,
      reason: rec.reason,
      ttl_ms: rec.ttlMs,
      notifiers,
    };
    if (linkIds.length) Object.assign(details, { link_ids: linkIds, links_expire_at: n.links_expire_at });
    if (n.decision) Object.assign(details, { decision: n.decision.state, decided_by: n.decision.by });
    if (action === 'progress') details.approvals = n.approvals;
    try {
      await this.d.events.emit({
        type: `access.${step}` as EventType,
        outcome: 'success',
        actor: { ...SYSTEM_ACTOR, roles: [...SYSTEM_ACTOR.roles] },
        source: LOCAL_SOURCE,
        target: { name: `grant/${rec.id}`, protocol: 'vigil' },
        details: Object.fromEntries(Object.entries(details).filter(([, v]) => v !== undefined)),
      });
    } catch (e) {
      // Not recorded, so not sent: hand the claim back for the next sweep.
      const undo = { ...(field ? { [field]: undefined } : {}), approvalsTold: toldBefore };
      await this.d.store.updateAccess(rec.id, (cur) => ({ ...cur, notify: { ...progressOf(cur), ...undo } })).catch(() => {});
      throw e;
    }
    for (const name of notifiers) await this.d.outbox.add(name, n, now);
    this.d.dispatcher.kick();
  }
}
