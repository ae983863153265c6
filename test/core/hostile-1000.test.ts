import { execFile, spawn } from 'node:child_process';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFloodWorld, FLOOD_BUDGET, auditBytes, hostileLoad as load, type AllWorld } from '../support/hostile.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

/**
 * Hostile load at scale (issue #16 item 4), the attacker in its own process (test/support/hostile-load.ts)
 * so the memory measured is the gateway's (and this test harness's, which is steady):
 * 1,000 slowloris connections per database/SSH listener: gateway memory and audit bytes stay bounded,
 * the cuts are recorded within the per-source budget. Figures are printed for the closing note.
 */

const BUDGET = FLOOD_BUDGET;
const hostileLoad = (args: string[]) => load({ postgres: w.ports.postgres!, mysql: w.ports.mysql!, ssh: w.ports.ssh! }, args);
const ADDRESSES = 10;

let w: AllWorld;
beforeAll(async () => {
  w = await startFloodWorld();
}, 180_000);
afterAll(async () => {
  await w?.stop();
});

const timeoutCut = (e: AuditEvent) => e.type === 'auth.failure' && (e.details as { reason?: string }).reason === 'timeout';

describe('1,000 hostile connections per protocol', () => {
  it('gateway memory and audit bytes stay bounded; cuts are recorded within the per-source budget', async () => {
    const before = w.tg.events.filter(timeoutCut).length;
    const bytes0 = auditBytes(w.tg);
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    let peakOpen = 0;
    let counting = false;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
      if (counting) return;
      counting = true;
      // Hostile connections the gateway holds at once (its side of each, from the kernel's table), asynchronously.
      execFile('ss', ['-tnH', 'state', 'established', `( sport = :${w.ports.postgres} or sport = :${w.ports.mysql} or sport = :${w.ports.ssh} )`], { maxBuffer: 64 << 20 }, (_e, out) => {
        counting = false;
        peakOpen = Math.max(peakOpen, String(out ?? '').split('\n').filter(Boolean).length);
      });
    }, 250);
    const r = await hostileLoad(['--per-listener', '1000', '--addresses', String(ADDRESSES), '--from', '127.0.8', '--open-rate', '1500']);
    clearInterval(sampler);
    // Summaries of the windows still open are part of what an attack costs in audit bytes.
    w.tg.gw.services.refusals!.sweep(true);
    await w.tg.waitForEvent((e) => e.type === 'auth.failure.summary' && e.source.ip.startsWith('127.0.8.'), 10_000);
    await new Promise((res) => setTimeout(res, 500));
    const bytes = auditBytes(w.tg) - bytes0;
    const recorded = w.tg.events.filter(timeoutCut).length - before;
    const summaries = w.tg.events.filter((e) => e.type === 'auth.failure.summary' && e.source.ip.startsWith('127.0.8.')).length;
    const growth = peak - rss0;
    console.log(
      `[hostile-scale] 3 x 1000 slowloris (${ADDRESSES} source addresses, budget ${BUDGET}/source/window): ${JSON.stringify(r)}; ` +
        `peak hostile connections held at once ${peakOpen}; gateway+test rss ${rss0} -> peak ${peak} (growth ${growth} bytes, ${Math.round(growth / Math.max(1, peakOpen))} per connection held); ` +
        `audit: ${recorded} auth.failure events + ${summaries} summaries, ${bytes} bytes; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
    );
    expect(r.started).toBe(3000);
    expect(r.cut).toBe(3000);
    // At most the budget per source and protocol is written one by one, plus one summary each.
    expect(recorded).toBeLessThanOrEqual(BUDGET * ADDRESSES * 3);
    expect(summaries).toBeLessThanOrEqual(ADDRESSES * 3);
    expect(bytes).toBeLessThan(2 * 1024 * 1024);
    // Unauthenticated connections hold little: 3,000 of them at once cost well under 100 KiB each.
    expect(growth).toBeLessThan(300 * 1024 * 1024);
  }, 120_000);
});
