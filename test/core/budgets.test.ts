import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import ssh2 from 'ssh2';
import { RefusalBudget, type RefusalSummary } from '../../src/sessions/refusal-budget.ts';
import { Metrics } from '../../src/metrics.ts';
import { searchAuditLog } from '../../recorder/audit/read.ts';
import { dataPaths } from '../../src/data-dir.ts';
import { encodeCancelRequest, encodeStartupMessage } from '../../proxies/postgres/frontend.ts';
import { encodePacket } from '../../proxies/mysql/framing.ts';
import { buildClientHandshake } from '../../proxies/mysql/handshake.ts';
import { RAW_CAPS } from '../mysql/raw-client.ts';
import { startWorld as startPgWorld, type PgWorld } from '../postgres/helpers.ts';
import { startWorld as startMyWorld, type MyWorld } from '../mysql/helpers.ts';
import { startWorld as startSshWorld, type SshWorld } from '../ssh/harness.ts';
import { waitFor } from '../support/tmp.ts';
import type { TestGateway } from '../support/gateway.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';

describe('RefusalBudget', () => {
  const make = (opts: Partial<ConstructorParameters<typeof RefusalBudget>[0]> = {}) => {
    let t = 1_000_000;
    const summaries: RefusalSummary[] = [];
    const b = new RefusalBudget({ perWindow: 3, windowMs: 60_000, allow: ['10.9.0.0/16'], ...opts }, (s) => summaries.push(s), () => t);
    return { b, summaries, advance: (ms: number) => (t += ms) };
  };

  it('records the first N per source and window, counts the rest with reasons and first/last time', () => {
    const { b, summaries, advance } = make();
    const taken = [];
    for (let i = 0; i < 10; i++) {
      taken.push(b.take('postgres', '203.0.113.9', i % 2 ? 'unknown_cancel_key' : 'no_certificate'));
      advance(1000);
    }
    expect(taken.filter(Boolean)).toHaveLength(3);
    // Another source and another protocol each have their own budget.
    expect(b.take('postgres', '203.0.113.10', 'no_certificate')).toBe(true);
    expect(b.take('ssh', '203.0.113.9', 'no_certificate')).toBe(true);
    expect(summaries).toHaveLength(0);
    advance(60_000);
    b.sweep(false);
    expect(summaries).toHaveLength(1);
    const s = summaries[0];
    expect(s).toMatchObject({ protocol: 'postgres', ip: '203.0.113.9', recorded: 3, suppressed: 7, reasons: { unknown_cancel_key: 4, no_certificate: 3 } });
    expect(s.first.getTime()).toBe(1_003_000);
    expect(s.last.getTime()).toBe(1_009_000);
    expect(s.windowStart.getTime()).toBe(1_000_000);
    // The next window starts with a fresh budget.
    expect(b.take('postgres', '203.0.113.9', 'no_certificate')).toBe(true);
    expect(b.counts().get('postgres')).toEqual({ recorded: 5, suppressed: 7, allowListed: 0, summaries: 1 });
    b.close();
  });

  it('never summarises an allow-listed source', () => {
    const { b, summaries } = make();
    for (let i = 0; i < 50; i++) expect(b.take('mysql', '10.9.4.4', 'no_certificate')).toBe(true);
    b.close();
    expect(summaries).toHaveLength(0);
    expect(b.counts().get('mysql')).toMatchObject({ allowListed: 50, recorded: 0, suppressed: 0 });
  });

  it('close() summarises open windows (nothing counted is lost), and a source under budget writes no summary', () => {
    const { b, summaries } = make();
    for (let i = 0; i < 5; i++) b.take('ssh', '198.51.100.1', 'no_certificate');
    b.take('ssh', '198.51.100.2', 'no_certificate');
    expect(b.overBudget().get('ssh')).toBe(1);
    b.close();
    expect(summaries.map((s) => [s.ip, s.suppressed])).toEqual([['198.51.100.1', 2]]);
  });

  it('beyond maxSources, new sources share one bucket (a spoofing flood stays bounded)', () => {
    const { b, summaries } = make({ maxSources: 2, perWindow: 1 });
    for (let i = 0; i < 10; i++) b.take('ssh', `192.0.2.${i}`, 'no_certificate');
    b.close();
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ ip: '(other sources)', recorded: 1, suppressed: 7 });
  });

  it('its own timer writes the summary once a window has closed (no further refusal needed)', async () => {
    const summaries: RefusalSummary[] = [];
    const b = new RefusalBudget({ perWindow: 1, windowMs: 200, allow: [] }, (s) => summaries.push(s));
    for (let i = 0; i < 4; i++) b.take('postgres', '198.51.100.7', 'no_certificate');
    await waitFor(() => summaries.length > 0 || undefined, 10_000, 'timer summary');
    b.close();
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ recorded: 1, suppressed: 3 });
  });

  it('rejects an allow-list entry that is not an address or block', () => {
    expect(() => new RefusalBudget({ perWindow: 1, windowMs: 1000, allow: ['nope'] }, () => {})).toThrow(/budgets.allow/);
  });
});

// ---- integration: a hostile source on each listener, next to a legitimate client on the same address ----

const HOSTILE = '127.0.0.1';
const ALLOWED = '127.0.0.3';
const ATTEMPTS = Number(process.env.BUDGET_ATTEMPTS ?? 300);
const BUDGET = Number(process.env.BUDGET_PER_WINDOW ?? 20);
const budgetConfig = { budgets: { refusals_per_window: BUDGET, window: '1h', allow: [`${ALLOWED}/32`] } };

function auditBytes(tg: TestGateway): number {
  const dir = dataPaths(tg.dataDir).audit;
  let total = 0;
  const walk = (d: string) => {
    for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, ent.name);
      if (ent.isDirectory()) walk(p);
      else total += fs.statSync(p).size;
    }
  };
  walk(dir);
  return total;
}

async function pool(n: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await fn(next++);
  }));
}

/** A raw TCP attempt from `localAddress`: `onConnect` talks, the attempt ends when the gateway closes. */
function rawAttempt(port: number, localAddress: string, talk: (s: net.Socket) => void): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.on('error', () => {});
    const t0 = Date.now();
    s.on('close', () => {
      if (process.env.BUDGET_DEBUG) console.log(`attempt ${port} from ${localAddress} took ${Date.now() - t0} ms`);
      resolve();
    });
    s.once('connect', () => talk(s));
    // Read (and drop) the refusal, or the socket never sees the gateway's end.
    s.resume();
    s.setTimeout(15_000, () => s.destroy());
  });
}

const refusalFrom = (ip: string, types: string[]) => (e: AuditEvent) => e.source.ip === ip && types.includes(e.type);

interface Figures {
  protocol: string;
  allowListed: { events: number; bytes: number };
  hostile: { events: number; bytes: number; summary: AuditEvent };
}
const figures: Figures[] = [];
afterAll(() => {
  for (const f of figures) {
    console.log(`[budgets] ${f.protocol}: ${ATTEMPTS} refusals unbudgeted (allow-listed source): ${f.allowListed.events} events, ${f.allowListed.bytes} audit bytes; ` +
      `hostile source with budget ${BUDGET}: ${f.hostile.events} events, ${f.hostile.bytes} audit bytes`);
  }
});

/**
 * The same 300 refusals from an allow-listed source (recorded one by one, as without budgets) and from a
 * hostile one (budget + one summary), with audit bytes for each.
 */
async function measure(protocol: string, tg: TestGateway, types: string[], attempt: (from: string, i: number) => Promise<void>): Promise<Figures> {
  const budget = tg.gw.services.refusals!;
  const b0 = auditBytes(tg);
  const n0 = tg.events.length;
  await pool(ATTEMPTS, 8, (i) => attempt(ALLOWED, i));
  await waitFor(() => tg.events.filter(refusalFrom(ALLOWED, types)).length >= ATTEMPTS || undefined, 60_000, 'allow-listed refusals recorded');
  const allowListed = { events: tg.events.length - n0, bytes: auditBytes(tg) - b0 };
  expect(tg.events.filter(refusalFrom(ALLOWED, types))).toHaveLength(ATTEMPTS);
  expect(budget.counts().get(protocol)?.allowListed).toBe(ATTEMPTS);

  const b1 = auditBytes(tg);
  const n1 = tg.events.length;
  await pool(ATTEMPTS, 8, (i) => attempt(HOSTILE, i));
  await waitFor(() => {
    const c = budget.counts().get(protocol)!;
    return c.recorded + c.suppressed >= ATTEMPTS || undefined;
  }, 60_000, 'hostile refusals counted');
  await waitFor(() => tg.events.filter(refusalFrom(HOSTILE, types)).length >= BUDGET || undefined, 10_000, 'budgeted refusals recorded');
  // The window closes (as the sweep timer does when it ends): one summary for the rest.
  budget.sweep(true);
  const summary = await tg.waitForEvent((e) => e.type === 'auth.failure.summary' && e.target.protocol === protocol && e.source.ip === HOSTILE);
  const hostile = { events: tg.events.length - n1, bytes: auditBytes(tg) - b1, summary };
  expect(tg.events.filter(refusalFrom(HOSTILE, types)).length).toBe(BUDGET);
  expect(hostile.events).toBe(BUDGET + 1);
  const d = summary.details as { recorded: number; suppressed: number; reasons: Record<string, number>; first: string; last: string };
  expect(d.recorded + d.suppressed).toBe(ATTEMPTS);
  expect(Object.values(d.reasons).reduce((a, b) => a + b, 0)).toBe(d.suppressed);
  expect(Date.parse(d.first)).toBeLessThanOrEqual(Date.parse(d.last));

  const metrics = new Metrics(tg.gw.services.events, tg.gw.services.sessions, budget);
  const text = metrics.render();
  metrics.close();
  expect(text).toContain(`vigil_refusal_budget ${BUDGET}\n`);
  expect(text).toContain(`vigil_refusals_over_budget_total{protocol="${protocol}"} ${ATTEMPTS - BUDGET}\n`);
  expect(text).toContain(`vigil_refusals_recorded_total{protocol="${protocol}"} ${BUDGET}\n`);
  expect(text).toContain(`vigil_refusals_allow_listed_total{protocol="${protocol}"} ${ATTEMPTS}\n`);
  expect(text).toContain(`vigil_refusal_summaries_total{protocol="${protocol}"} 1\n`);
  const f = { protocol, allowListed, hostile };
  figures.push(f);
  return f;
}

/** Over budget again in a fresh window; a legitimate client on the same address still gets in; at shutdown the open window is summarised. */
async function overBudgetThenLegitThenShutdown(protocol: string, tg: TestGateway, attempt: (from: string, i: number) => Promise<void>, legit: () => Promise<void>): Promise<void> {
  const budget = tg.gw.services.refusals!;
  const before = budget.counts().get(protocol)!.suppressed;
  await pool(BUDGET + 10, 4, (i) => attempt(HOSTILE, i));
  await waitFor(() => budget.counts().get(protocol)!.suppressed >= before + 10 || undefined, 30_000, 'over budget again');
  expect(budget.overBudget().get(protocol)).toBe(1);
  await legit();
  // A success consumed no budget: still exactly 10 over.
  expect(budget.counts().get(protocol)!.suppressed).toBe(before + 10);
  await tg.stop();
  const { records } = await searchAuditLog(dataPaths(tg.dataDir).audit, { type: 'auth.failure.summary' });
  const last = records.map((r) => r.event).filter((e) => e.target.protocol === protocol && e.source.ip === HOSTILE).at(-1);
  expect(last?.details).toMatchObject({ recorded: BUDGET, suppressed: 10 });
}

describe('per-source refusal budget on the postgres listener', () => {
  let w: PgWorld;
  afterAll(async () => {
    await w?.stop();
  });
  // Alternately an unauthenticated CancelRequest with an unknown key and a plaintext startup (no certificate).
  const attempt = (from: string, i: number) =>
    rawAttempt(w.port, from, (s) => {
      if (process.env.BUDGET_PG_KIND ? process.env.BUDGET_PG_KIND === 'cancel' : i % 2) s.end(encodeCancelRequest(424242, Buffer.from([1, 2, 3, 4])));
      else s.write(encodeStartupMessage([['user', 'mallory'], ['database', 'pg']]));
    });

  it(`${ATTEMPTS} refusals from one source: ${BUDGET} events and one summary; allow-listed source recorded one by one`, async () => {
    w = await startPgWorld(budgetConfig);
    await measure('postgres', w.tg, ['auth.failure', 'db.cancel'], attempt);
  }, 180_000);

  it('a legitimate psql from the same address succeeds while it is over budget; shutdown writes the open summary', async () => {
    await overBudgetThenLegitThenShutdown('postgres', w.tg, attempt, async () => {
      const r = await w.psql(['-Atc', 'SELECT 7']);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('7');
    });
  }, 120_000);
});

describe('per-source refusal budget on the mysql listener', () => {
  let w: MyWorld;
  afterAll(async () => {
    await w?.stop();
  });
  // A login without TLS, after the server greeting.
  const attempt = (from: string) =>
    rawAttempt(w.port, from, (s) => {
      s.once('data', () => s.write(encodePacket(1, buildClientHandshake({ capabilities: RAW_CAPS, maxPacket: 1 << 24, charset: 45, user: 'db', authResponse: Buffer.alloc(0), authPlugin: 'mysql_native_password', attributes: {} }))));
    });

  it(`${ATTEMPTS} refusals from one source: ${BUDGET} events and one summary; allow-listed source recorded one by one`, async () => {
    w = await startMyWorld(budgetConfig);
    await measure('mysql', w.tg, ['auth.failure'], attempt);
  }, 180_000);

  it('a legitimate mariadb client from the same address succeeds while it is over budget; shutdown writes the open summary', async () => {
    await overBudgetThenLegitThenShutdown('mysql', w.tg, attempt, async () => {
      const r = await w.cli(['--user=db', '--ssl-verify-server-cert', '-e', 'SELECT 7']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('7\n7\n');
    });
  }, 120_000);
});

describe('per-source refusal budget on the ssh listener', () => {
  let w: SshWorld;
  afterAll(async () => {
    await w?.stop();
  });
  const roguePair = ssh2.utils.generateKeyPairSync('ed25519');
  // A plain key (no vigil certificate) from `from`.
  const attempt = (from: string) =>
    new Promise<void>((resolve) => {
      const sock = net.connect({ host: '127.0.0.1', port: w.port, localAddress: from });
      sock.on('error', () => resolve());
      const c = new ssh2.Client();
      c.on('error', () => {});
      c.on('close', () => resolve());
      c.on('ready', () => c.end());
      c.connect({ sock, username: 'web1', privateKey: roguePair.private, readyTimeout: 15_000, hostVerifier: () => true });
    });

  it(`${ATTEMPTS} refusals from one source: ${BUDGET} events and one summary; allow-listed source recorded one by one`, async () => {
    w = await startSshWorld({ config: budgetConfig });
    await measure('ssh', w.gw, ['auth.failure'], attempt);
  }, 240_000);

  it('a legitimate ssh from the same address succeeds while it is over budget; shutdown writes the open summary', async () => {
    await overBudgetThenLegitThenShutdown('ssh', w.gw, attempt, async () => {
      const alice = await w.issue();
      const r = await w.run('ssh', [...w.opts(alice), 'web1@127.0.0.1', 'echo', 'seven']);
      expect(r.stderr).not.toMatch(/denied|vigil:/i);
      expect(r.stdout.trim()).toBe('seven');
    });
  }, 120_000);
});
