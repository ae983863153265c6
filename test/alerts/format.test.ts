import { describe, expect, it } from 'vitest';
import { backoffMs } from '../../src/notifiers/dispatcher.ts';
import { dedupKey, pagerDutyBody, syslogFrame, type Notification } from '../../src/notifiers/format.ts';
import { SlidingWindow } from '../../src/alerts/window.ts';

const n: Notification = { action: 'trigger', alert_id: '01HX', rule: 'r', group: { 'actor.user': 'a"]\\b' }, count: 2, threshold: 2, window_ms: 60000, event_ids: ['1', '2'], time: '2026-12-06T04:00:00.000000Z' };

describe('notifier formats and policies', () => {
  it('backoff doubles from backoff_initial up to backoff_max, plus at most 50% jitter', () => {
    const cfg = { backoff_initial: 1000, backoff_max: 8000 };
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffMs(cfg, a, () => 0))).toEqual([1000, 2000, 4000, 8000, 8000, 8000]);
    expect(backoffMs(cfg, 2, () => 1)).toBe(3000);
  });

  it('syslog: octet count is the UTF-8 byte length; SD values escape " \\ ]', () => {
    const frame = syslogFrame({ ...n, rule: 'règle' }, 13, 'host-1');
    const sp = frame.indexOf(0x20);
    const len = Number(frame.subarray(0, sp).toString());
    expect(frame.length - sp - 1).toBe(len);
    const msg = frame.subarray(sp + 1).toString();
    expect(msg).toMatch(/^<108>1 \S+ host-1 vigil \d+ alert\.fired \[vigil@32473 rule="règle" /);
    expect(msg).toContain('actor.user="a\\"\\]\\\\b"');
  });

  it('PagerDuty resolve carries only the dedup key of its trigger', () => {
    const t = JSON.parse(pagerDutyBody(n, 'K', 'error'));
    const r = JSON.parse(pagerDutyBody({ ...n, action: 'resolve' }, 'K', 'error'));
    expect(r).toEqual({ routing_key: 'K', event_action: 'resolve', dedup_key: t.dedup_key });
    expect(dedupKey(n)).toBe('vigil/r/actor.user=a"]\\b');
  });

  it('window: count of events with time in (t - window, t], in microseconds', () => {
    const w = new SlidingWindow(1000);
    expect(w.add(0, 'a')).toBe(1);
    expect(w.add(999, 'b')).toBe(2);
    expect(w.add(1000, 'c')).toBe(2); // the event at 0 is exactly one window old: out
    expect(w.eventIds()).toEqual(['b', 'c']);
  });
});
