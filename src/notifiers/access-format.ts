import os from 'node:os';
import { SLACK_FIELD_MAX, SLACK_TEXT_MAX, sdEscape, slackEscape, slackFit, slackLine, slackMrkdwn, syslogLine } from './format.ts';

/**
 * What approvers are sent about an access request: that it waits for them (`request`, again as a
 * `reminder`, or to the escalation notifiers as an `escalation`), and how it was decided (`decision`).
 * The links are one-time and work only with an approver's vigil client certificate.
 */
export interface AccessNotification {
  kind: 'access';
  action: 'request' | 'reminder' | 'escalation' | 'progress' | 'decision';
  request_id: string;
  reason: string;
  requester: string;
  beneficiary: string;
  role: string;
  /** Empty: everything the role reaches. */
  targets: string[];
  duration: string;
  ttl_ms: number;
  request_expires_at: string;
  /** Who approved so far (a role may need several approvals). */
  approvals: string[];
  approve_url?: string;
  deny_url?: string;
  links_expire_at?: string;
  /** For `decision`: the state it ended in and who decided (none when nobody did and it expired). */
  decision?: { state: string; by?: string; reason?: string };
  time: string;
}

export function isAccessNotification(n: unknown): n is AccessNotification {
  return !!n && typeof n === 'object' && (n as { kind?: unknown }).kind === 'access';
}

type Show = (value: string) => string;
const asIs: Show = (v) => v;
const targetsText = (n: AccessNotification, show: Show) => (n.targets.length ? n.targets.map(show).join(', ') : 'all targets of the role');
const filer = (n: AccessNotification, show: Show) => (n.requester === n.beneficiary ? show(n.beneficiary) : `${show(n.requester)} for ${show(n.beneficiary)}`);

/** `show` renders each value the request carries for the medium: as it is, or escaped for Slack. */
export function accessSummary(n: AccessNotification, show: Show = asIs): string {
  const what = `${filer(n, show)} → role ${show(n.role)} on ${targetsText(n, show)} for ${show(n.duration)}`;
  const id = show(n.request_id);
  switch (n.action) {
    case 'request':
      return `vigil access request ${id} waits for approval: ${what}`;
    case 'reminder':
      return `Reminder: vigil access request ${id} still waits for approval: ${what}`;
    case 'escalation':
      return `Escalation: nobody decided vigil access request ${id}: ${what}`;
    case 'progress':
      return `vigil access request ${id} was approved by ${n.approvals.map(show).join(', ')} and needs more approvals: ${what}`;
    case 'decision': {
      const d = n.decision;
      const by = show(String(d?.by));
      const verb = d?.state === 'active' ? `approved by ${by}` : d?.state === 'denied' ? `denied by ${by}${d.reason ? ` (${show(d.reason)})` : ''}` : d?.state === 'expired' ? 'expired undecided' : d?.state !== undefined ? show(d.state) : 'decided';
      return `vigil access request ${id} ${verb}: ${what}`;
    }
  }
}

export function accessWebhookBody(n: AccessNotification): string {
  return JSON.stringify({ source: 'vigil', ...n, summary: accessSummary(n) });
}

/**
 * Slack: the facts as fields and, while it is open, Approve/Deny buttons opening the one-time links.
 * Every value is escaped: a requester's reason cannot ping the channel or show a link of its own next
 * to the real buttons. The reason keeps its line breaks; single values are shown on one line.
 */
export function accessSlackBody(n: AccessNotification): string {
  const fields = [
    slackMrkdwn(`*Requester*\n${slackLine(n.requester)}`, SLACK_FIELD_MAX),
    slackMrkdwn(`*For*\n${slackLine(n.beneficiary)}`, SLACK_FIELD_MAX),
    slackMrkdwn(`*Role*\n${slackLine(n.role)}`, SLACK_FIELD_MAX),
    slackMrkdwn(`*Targets*\n${targetsText(n, slackLine)}`, SLACK_FIELD_MAX),
    slackMrkdwn(`*Duration*\n${slackLine(n.duration)}`, SLACK_FIELD_MAX),
    slackMrkdwn(`*Reason*\n${slackEscape(n.reason.slice(0, 500))}`, SLACK_FIELD_MAX),
  ];
  const summary = accessSummary(n, slackLine);
  const blocks: unknown[] = [
    { type: 'section', text: slackMrkdwn(summary) },
    { type: 'section', fields },
  ];
  if (n.approve_url && n.deny_url) {
    blocks.push({
      type: 'actions',
      elements: [
        { type: 'button', style: 'primary', text: { type: 'plain_text', text: 'Approve' }, url: n.approve_url },
        { type: 'button', style: 'danger', text: { type: 'plain_text', text: 'Deny' }, url: n.deny_url },
      ],
    });
    blocks.push({ type: 'context', elements: [slackMrkdwn(`One-time links, valid until ${slackLine(n.links_expire_at ?? '')}, with your vigil client certificate. Request ${slackLine(n.request_id)}.`)] });
  }
  return JSON.stringify({ text: slackFit(summary, SLACK_TEXT_MAX), blocks });
}

/** PagerDuty: a request opens an incident (dedup key per request), its decision resolves it. */
export function accessPagerDutyBody(n: AccessNotification, routingKey: string, severity: string): string {
  const dedup_key = `vigil/access/${n.request_id}`;
  if (n.action === 'decision') return JSON.stringify({ routing_key: routingKey, event_action: 'resolve', dedup_key });
  return JSON.stringify({
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key,
    payload: { summary: accessSummary(n).slice(0, 1024), source: os.hostname(), severity, timestamp: n.time, component: 'vigil', class: 'access.request', custom_details: { ...n } },
    ...(n.approve_url ? { links: [{ href: n.approve_url, text: 'Approve' }, { href: n.deny_url, text: 'Deny' }] } : {}),
  });
}

/** RFC 5424 over octet counting, like alert frames; links are not sent to a SIEM (they are credentials-adjacent). */
export function accessSyslogFrame(n: AccessNotification, facility: number, host = os.hostname()): Buffer {
  const sd = [
    `request_id="${sdEscape(n.request_id)}"`,
    `requester="${sdEscape(n.requester)}"`,
    `beneficiary="${sdEscape(n.beneficiary)}"`,
    `role="${sdEscape(n.role)}"`,
    ...(n.decision ? [`state="${sdEscape(n.decision.state)}"`] : []),
  ];
  const hostname = host.replace(/[^\x21-\x7e]/g, '').slice(0, 255) || '-';
  const line = `<${facility * 8 + 5}>1 ${new Date().toISOString()} ${hostname} vigil ${process.pid} access.${n.action} [vigil@32473 ${sd.join(' ')}] \ufeff${syslogLine(accessSummary(n))}`;
  const body = Buffer.from(line, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `), body]);
}
