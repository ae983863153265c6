import os from 'node:os';
import { createHash, createHmac } from 'node:crypto';

/** What every notifier is handed: an `alert.fired` event id plus the firing, or a resolution. */
export interface Notification {
  action: 'trigger' | 'resolve';
  /** The `alert.fired` event id. */
  alert_id: string;
  rule: string;
  group: Record<string, string>;
  count: number;
  threshold: number;
  window_ms: number;
  event_ids: string[];
  time: string;
}

/** PagerDuty refuses (HTTP 400) an event whose dedup_key is longer than this. */
export const PAGERDUTY_DEDUP_KEY_MAX = 255;

/**
 * Stable per rule and group: PagerDuty's dedup key, so a resolve closes the incident its trigger opened.
 * A group value is chosen by whoever caused the events (a user name an unauthenticated client sent): past
 * PagerDuty's limit the key is a digest of itself, still stable, so such a value cannot get the alert refused.
 */
export function dedupKey(n: Pick<Notification, 'rule' | 'group'>): string {
  const g = Object.entries(n.group).map(([k, v]) => `${k}=${v}`).join(',');
  const key = g ? `vigil/${n.rule}/${g}` : `vigil/${n.rule}`;
  return key.length <= PAGERDUTY_DEDUP_KEY_MAX ? key : `vigil/sha256/${createHash('sha256').update(key).digest('hex')}`;
}

/** `show` renders each value (rule, group) for the medium: as it is, or escaped for Slack. */
export function summaryOf(n: Notification, show: (value: string) => string = (v) => v): string {
  const g = Object.entries(n.group).map(([k, v]) => `${show(k)}=${show(v)}`).join(' ');
  const who = g ? ` for ${g}` : '';
  if (n.action === 'resolve') return `vigil alert ${show(n.rule)} resolved${who}: no matching event for ${n.window_ms / 1000}s`;
  return `vigil alert ${show(n.rule)} fired${who}: ${n.count} event(s) within ${n.window_ms / 1000}s (threshold ${n.threshold})`;
}

/**
 * Slack's control characters as entities, its documented escaping: text from events or requesters (a
 * target name an unauthenticated client asked for, a request's reason) shows as typed and can never make
 * a mention (`<!channel>`), a link (`<url|label>`) or a user reference in the message.
 */
export function slackEscape(text: string): string {
  return text.replace(/[&<>]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : '&gt;'));
}

/** A value shown on one line: line breaks (and other control characters) cannot draw fake lines or fields. */
export function slackLine(text: string): string {
  return slackEscape(text.replace(/[\u0000-\u001f\u007f]+/g, ' '));
}

/** Slack refuses (HTTP 400 invalid_blocks) a message with a longer section text or field. */
export const SLACK_TEXT_MAX = 3000;
export const SLACK_FIELD_MAX = 2000;

/**
 * Escaped Slack text cut to `max` characters (an entity such as `&lt;` is never split): a value as long as
 * its sender likes (a user name, a request's reason) must not make Slack refuse the whole message.
 */
export function slackFit(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max - 1).replace(/&[a-z]{0,3}$/, '')}…`;
}

/**
 * A Slack mrkdwn text object. `verbatim`: Slack does not turn plain text into links, channel names or
 * mentions on its own (a URL or `@here` in an event value stays text); the markup vigil writes still works.
 */
export const slackMrkdwn = (text: string, max = SLACK_TEXT_MAX) => ({ type: 'mrkdwn', text: slackFit(text, max), verbatim: true });

/** `X-Vigil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` (receivers reject stale t). */
export function signature(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export function webhookBody(n: Notification): string {
  return JSON.stringify({ source: 'vigil', ...n });
}

/** Slack incoming-webhook message: `text` for notifications, `blocks` for the channel. Every value is escaped. */
export function slackBody(n: Notification): string {
  const fields = [
    slackMrkdwn(`*Rule*\n${slackLine(n.rule)}`, SLACK_FIELD_MAX),
    slackMrkdwn(`*Count*\n${n.count} / ${n.threshold} in ${n.window_ms / 1000}s`, SLACK_FIELD_MAX),
    ...Object.entries(n.group).map(([k, v]) => slackMrkdwn(`*${slackLine(k)}*\n${slackLine(v)}`, SLACK_FIELD_MAX)),
  ];
  const summary = summaryOf(n, slackLine);
  return JSON.stringify({
    text: slackFit(summary, SLACK_TEXT_MAX),
    blocks: [
      { type: 'section', text: slackMrkdwn(`:rotating_light: ${summary}`) },
      { type: 'section', fields: fields.slice(0, 10) },
      { type: 'context', elements: [slackMrkdwn(`alert ${slackLine(n.alert_id)} · events ${slackLine(n.event_ids.slice(0, 5).join(', '))}${n.event_ids.length > 5 ? ' …' : ''}`)] },
    ],
  });
}

/** PagerDuty Events API v2 (trigger or resolve, one dedup key per rule and group). */
export function pagerDutyBody(n: Notification, routingKey: string, severity: string): string {
  if (n.action === 'resolve') return JSON.stringify({ routing_key: routingKey, event_action: 'resolve', dedup_key: dedupKey(n) });
  return JSON.stringify({
    routing_key: routingKey,
    event_action: 'trigger',
    dedup_key: dedupKey(n),
    payload: { summary: summaryOf(n).slice(0, 1024), source: os.hostname(), severity, timestamp: n.time, component: 'vigil', class: n.rule, custom_details: { ...n } },
  });
}

/**
 * Syslog text on one line (RFC 5424 8.2: avoid control characters). Values come from clients (a user name,
 * a target an unauthenticated client asked for): a line break in one must not draw a forged syslog line in
 * a receiver that stores messages line by line.
 */
export const syslogLine = (v: string) => v.replace(/[\u0000-\u001f\u007f]+/g, ' ');

/** RFC 5424 SD-PARAM-VALUE escaping: `"`, `\` and `]`, on one line. */
export const sdEscape = (v: string) => syslogLine(v).replace(/[\\"\]]/g, (c) => `\\${c}`);

/**
 * One RFC 5424 message (`<PRI>1 TIMESTAMP HOST vigil - alert.fired [vigil@32473 ...] MSG`) framed by octet
 * counting (RFC 6587 3.4.1: `LEN SP MSG`, LEN in bytes), as used over TCP and TLS (RFC 5425).
 */
export function syslogFrame(n: Notification, facility: number, host = os.hostname()): Buffer {
  const severity = n.action === 'resolve' ? 5 : 4; // notice / warning
  const sd = [`rule="${sdEscape(n.rule)}"`, `alert_id="${sdEscape(n.alert_id)}"`, `count="${n.count}"`, `threshold="${n.threshold}"`, ...Object.entries(n.group).map(([k, v]) => `${k.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 32)}="${sdEscape(v)}"`)];
  const msgId = n.action === 'resolve' ? 'alert.resolved' : 'alert.fired';
  const hostname = host.replace(/[^\x21-\x7e]/g, '').slice(0, 255) || '-';
  const line = `<${facility * 8 + severity}>1 ${new Date().toISOString()} ${hostname} vigil ${process.pid} ${msgId} [vigil@32473 ${sd.join(' ')}] \ufeff${syslogLine(summaryOf(n))}`;
  const body = Buffer.from(line, 'utf8');
  return Buffer.concat([Buffer.from(`${body.length} `), body]);
}
