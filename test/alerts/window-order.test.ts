import { describe, expect, it } from 'vitest';
import { AlertEngine, type Firing, type Resolution } from '../../src/alerts/engine.ts';
import { alertRulesSchema } from '../../src/alerts/config.ts';
import { SlidingWindow } from '../../src/alerts/window.ts';
import { createEvent, type AuditEvent } from '../../src/events/envelope.ts';

/**
 * With gateway.workers, events reach the primary's bus over IPC and can arrive out of time order. A
 * window's count must still be the number of events with time in (newest - window, newest], newest being
 * the latest time seen, whatever the order they arrived in.
 */

/** A deterministic shuffle (mulberry32), so a failure names an order that can be replayed. */
function shuffled<T>(items: T[], seed: number): T[] {
  let s = seed >>> 0;
  const random = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** What the window must hold after `arrived`: the events within one window of the latest, in time order. */
function expectedInWindow(arrived: { t: number; id: string }[], windowUs: number): string[] {
  const newest = Math.max(...arrived.map((e) => e.t));
  return arrived.filter((e) => e.t > newest - windowUs).sort((a, b) => a.t - b.t).map((e) => e.id);
}

describe('sliding window with events out of time order', () => {
  it('counts exactly the events in (newest - window, newest] for every arrival order', () => {
    // 10 events 1 ms apart, windows at and around the edges (an event exactly one window old is out).
    const events = Array.from({ length: 10 }, (_, i) => ({ t: 1_000_000 + i * 1000, id: `e${i}` }));
    for (const windowUs of [1000, 3000, 4999, 5000, 5001, 9000, 9001, 20_000]) {
      for (let seed = 1; seed <= 200; seed++) {
        const order = shuffled(events, seed);
        const w = new SlidingWindow(windowUs);
        for (let k = 0; k < order.length; k++) {
          const want = expectedInWindow(order.slice(0, k + 1), windowUs);
          const n = w.add(order[k]!.t, order[k]!.id);
          const where = `window ${windowUs} µs, seed ${seed}, after ${order.slice(0, k + 1).map((e) => e.id).join(' ')}`;
          expect(n, where).toBe(want.length);
          expect(w.eventIds(), where).toEqual(want);
          expect(w.newest, where).toBe(Math.max(...order.slice(0, k + 1).map((e) => e.t)));
        }
      }
    }
  });

  it('a late event older than the window of the newest is not counted, and does not keep older ones in', () => {
    const w = new SlidingWindow(1000);
    w.add(600, 'a');
    w.add(100, 'late'); // in (600 - 1000, 600]: counts
    expect(w.size).toBe(2);
    // At 1200 the window is (200, 1200]: the late event at 100 is out, even though it arrived after 600.
    expect(w.add(1200, 'b')).toBe(2);
    expect(w.eventIds()).toEqual(['a', 'b']);
    // Arriving after 1200, an event at 150 is already outside the window: not counted.
    expect(w.add(150, 'too-late')).toBe(2);
    expect(w.newest).toBe(1200);
  });

  it('after clear() a late event from before the last window is still out', () => {
    const w = new SlidingWindow(1000);
    w.add(5000, 'a');
    w.clear();
    expect(w.add(3000, 'old')).toBe(0);
    expect(w.add(4500, 'recent')).toBe(1);
  });
});

const T = Date.parse('2026-12-06T04:00:00.000Z');
const target = { name: 'pg', protocol: 'postgres' };

async function engineWith(rules: Record<string, unknown>[], onResolve?: (r: Resolution) => Promise<void>) {
  const fired: Firing[] = [];
  const engine = new AlertEngine(alertRulesSchema().parse(rules), { labelsOf: () => undefined, onFire: async (f) => void fired.push(f), onResolve });
  // The engine alone: events are handed to it the way the bus does, in the order given.
  let deliver: (e: AuditEvent) => void = () => {};
  await engine.start({ subscribe: (fn: (e: AuditEvent) => void) => ((deliver = fn), () => {}) } as never);
  const failure = (user: string, atMs: number): AuditEvent => {
    const e = createEvent({ type: 'auth.failure', outcome: 'failure', actor: { user, roles: [] }, source: { ip: '192.0.2.1', port: 1 }, target, time: new Date(atMs) });
    deliver(e);
    return e;
  };
  return { engine, fired, failure };
}

describe('alert engine with events out of time order', () => {
  it('fires exactly when the events in (newest - window, newest] reach the threshold, whatever the arrival order', async () => {
    // The same reference as above, with the window cleared after each firing (the next firing needs
    // `threshold` new events) while the latest time seen is kept.
    const times = Array.from({ length: 10 }, (_, i) => T + i);
    for (const [threshold, windowMs] of [[10, 10], [10, 9], [5, 5], [5, 4], [3, 2], [2, 1]] as const) {
      for (let seed = 1; seed <= 40; seed++) {
        const order = shuffled(times, seed);
        const { engine, fired, failure } = await engineWith([{ name: 'burst', match: { type: 'auth.failure' }, group_by: ['actor.user'], threshold, window: `${windowMs}ms` }]);
        const sent = order.map((t) => ({ t, id: failure('mallory', t).id }));
        await engine.idle();
        const expected: string[][] = [];
        let since: { t: number; id: string }[] = [];
        let latest = -Infinity;
        for (const e of sent) {
          latest = Math.max(latest, e.t);
          since.push(e);
          const bound = latest - windowMs;
          const ids = since.filter((x) => x.t > bound).sort((a, b) => a.t - b.t).map((x) => x.id);
          if (ids.length >= threshold) {
            expected.push(ids);
            since = [];
          }
        }
        const where = `threshold ${threshold} in ${windowMs} ms, arrival ${order.map((t) => t - T).join(' ')}`;
        expect(fired.map((f) => f.event_ids), where).toEqual(expected);
        await engine.stop();
      }
    }
  });

  it('resolution waits a whole window after the latest event, not after the one that completed the threshold', async () => {
    const resolved: { r: Resolution; atUs: number }[] = [];
    const { engine, fired, failure } = await engineWith(
      [{ name: 'burst', match: { type: 'auth.failure' }, group_by: ['actor.user'], threshold: 2, window: '300ms' }],
      async (r) => void resolved.push({ r, atUs: Date.now() * 1000 }),
    );
    const now = Date.now();
    failure('mallory', now);
    failure('mallory', now - 250); // arrives late and completes the threshold
    await engine.idle();
    expect(fired).toHaveLength(1);
    while (resolved.length === 0) await new Promise((r) => setTimeout(r, 20));
    await engine.stop();
    expect(resolved[0]!.r.last_event_time_us).toBe(now * 1000);
    expect(resolved[0]!.atUs).toBeGreaterThanOrEqual(now * 1000 + 300_000);
  });

  it('with more than 1024 groups, clean-up keeps a window that still holds events inside the window', async () => {
    const { engine, fired, failure } = await engineWith([{ name: 'burst', match: { type: 'auth.failure' }, group_by: ['actor.user'], threshold: 3, window: '1s' }]);
    failure('victim', T + 600);
    failure('victim', T + 100); // late: the window's latest event is still the one at T+600
    // Enough other groups for a clean-up at T+1150: quiet windows (newest at or before T+150) go.
    for (let i = 0; i < 1100; i++) failure(`other-${i}`, T + 1150);
    await engine.idle();
    // (T+250, T+1250] holds T+600, T+1200 and T+1250: the victim's group fires.
    failure('victim', T + 1200);
    failure('victim', T + 1250);
    await engine.idle();
    expect(fired.map((f) => f.group)).toEqual([{ 'actor.user': 'victim' }]);
    expect(fired[0]!.count).toBe(3);
    await engine.stop();
  });

  it('with more than 1024 groups live at once, clean-up keeps every one of them', async () => {
    const { engine, fired, failure } = await engineWith([{ name: 'burst', match: { type: 'auth.failure' }, group_by: ['actor.user'], threshold: 2, window: '1s' }]);
    // Round after round of new groups: the quiet ones of earlier rounds can go, the live ones must stay.
    for (let round = 0; round < 5; round++) {
      const at = T + round * 2000;
      for (let i = 0; i < 1500; i++) failure(`g${round}-${i}`, at);
      await engine.idle();
    }
    // The last round's groups are within the window: one more event each fires.
    for (let i = 0; i < 1500; i++) failure(`g4-${i}`, T + 8000 + 999);
    await engine.idle();
    expect(fired).toHaveLength(1500);
    await engine.stop();
  });
});
