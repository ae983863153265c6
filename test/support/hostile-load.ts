/**
 * Hostile load in its own process (so the gateway's memory is not mixed with the attacker's sockets):
 * slowloris connections to the gateway's listeners, one byte per `--every` ms, in the phases given, from
 * `--addresses` loopback source addresses. Prints one JSON line with what happened.
 *
 *   npx tsx test/support/hostile-load.ts --ports postgres=5432,mysql=3306,ssh=22 --per-listener 1000 \
 *     [--phases postgres/startup,mysql/ssl_request,ssh/ident] [--every 1000] [--addresses 10] [--from 127.0.6]
 *     [--sustain SECONDS]   keep per-listener connections open for that long, replacing each cut one
 *
 * Used by test/core/hostile-scale.test.ts and bench/hostile.ts.
 */
import { parseArgs } from 'node:util';
import { slowloris, clientHello, type Listener, type SlowResult } from './hostile.ts';

const { values } = parseArgs({
  options: {
    ports: { type: 'string' },
    'per-listener': { type: 'string', default: '100' },
    phases: { type: 'string', default: 'postgres/startup,mysql/ssl_request,ssh/ident' },
    every: { type: 'string', default: '1000' },
    addresses: { type: 'string', default: '10' },
    from: { type: 'string', default: '127.0.6' },
    sustain: { type: 'string' },
    'open-rate': { type: 'string', default: '400' },
  },
});

const ports = Object.fromEntries(values.ports!.split(',').map((kv) => kv.split('=') as [string, string]).map(([k, v]) => [k, Number(v)]));
const perListener = Number(values['per-listener']);
const every = Number(values.every);
const addresses = Number(values.addresses);
const phases = values.phases!.split(',').map((p) => p.split('/') as [Listener, string]);
const listeners = [...new Set(phases.map(([l]) => l))];
const sustainMs = values.sustain ? Number(values.sustain) * 1000 : 0;
/** Connections opened per second at most (a burst of thousands would only test the kernel's backlog). */
const openRate = Number(values['open-rate']);

const totals = { started: 0, cut: 0, completed: 0, failed: 0 };
const byPhase: Record<string, { cut: number; completed: number; failed: number }> = {};
const counters: Record<string, number> = {};
const cutMs: number[] = [];

async function one(listener: Listener): Promise<void> {
  const mine = phases.filter(([l]) => l === listener);
  const n = (counters[listener] = (counters[listener] ?? 0) + 1);
  const [l, phase] = mine[n % mine.length]!;
  const from = `${values.from}.${(n % addresses) + 1}`;
  totals.started++;
  const key = `${l}/${phase}`;
  const slot = (byPhase[key] ??= { cut: 0, completed: 0, failed: 0 });
  let r: SlowResult;
  try {
    r = await slowloris(l, phase, ports[l]!, from, every);
  } catch {
    totals.failed++;
    slot.failed++;
    return;
  }
  if (r.cutByGateway) {
    if (r.ms !== undefined) cutMs.push(r.ms);
    totals.cut++;
    slot.cut++;
  } else {
    totals.completed++;
    slot.completed++;
  }
}

async function main(): Promise<void> {
  await clientHello();
  const t0 = Date.now();
  const gap = 1000 / openRate;
  const work: Promise<void>[] = [];
  const sustained = async (listener: Listener) => {
    do await one(listener);
    while (sustainMs > 0 && Date.now() - t0 < sustainMs);
  };
  for (let i = 0; i < perListener; i++) {
    for (const l of listeners) work.push(sustained(l));
    if (gap * listeners.length >= 1) await new Promise((r) => setTimeout(r, gap * listeners.length));
  }
  await Promise.all(work);
  cutMs.sort((a, b) => a - b);
  const pct = (q: number) => cutMs[Math.min(cutMs.length - 1, Math.floor(q * cutMs.length))] ?? 0;
  const cutAfterMs = { p50: pct(0.5), p99: pct(0.99), max: cutMs.at(-1) ?? 0 };
  process.stdout.write(JSON.stringify({ ...totals, cutAfterMs, byPhase, ms: Date.now() - t0 }) + '\n');
}

main().catch((e) => {
  process.stderr.write(String(e?.stack ?? e) + '\n');
  process.exit(1);
});
