import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, it, expect, vi } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import {
  openAuditLog, openAuditForCli, verifyAuditLog, searchAuditLog, tailAuditLog, listSegments, encodeEvent, canonicalJson, HEAD_FILE,
  type AuditLogWriter,
} from '../../recorder/audit/index.ts';
import { canonicalJsonReference } from '../../recorder/audit/canonical.ts';
import { eventPieces } from '../../recorder/audit/encode.ts';
import { segmentName, encodeRecord, encodeRecordInto, maxRecordBytes, recordHash, ZERO_HASH } from '../../recorder/audit/record.ts';
import { AuditUnavailableError, VigilError } from '../../src/errors.ts';
import { EventBus } from '../../src/events/bus.ts';
import { writeAllv } from '../../recorder/audit/durable.ts';
import { commitChannel, type CommitMessage } from '../../recorder/audit/writer.ts';
import { makeSigningKey, auditOptions, sampleEvent } from './helpers.ts';

interface Fixture {
  dir: string;
  keyFile: string;
  publicPem: string;
}

function fixture(): Fixture {
  const base = tempDir();
  const key = makeSigningKey(path.join(base, 'ca'));
  return { dir: path.join(base, 'audit'), keyFile: key.keyFile, publicPem: key.publicPem };
}

async function writeLog(f: Fixture, n: number, over: Parameters<typeof auditOptions>[1] = {}): Promise<void> {
  const w = await openAuditLog(f.dir, auditOptions(f.keyFile, over));
  await Promise.all(Array.from({ length: n }, (_, i) => w.append(sampleEvent(i))));
  await w.close();
}

/** Whichever segment comes next (names for seq 2..41, today) lands on a full device: writes fail with ENOSPC. */
function trapNextSegments(f: Fixture): { remove(): void } {
  const traps = Array.from({ length: 40 }, (_, i) => path.join(f.dir, segmentName(i + 2, new Date())));
  for (const t of traps) fs.symlinkSync('/dev/full', t);
  return { remove: () => traps.forEach((t) => fs.rmSync(t)) };
}

/** A log with one durable record whose next segments (small ones: 2000 bytes) all land on a full device. */
async function logBeforeFullDisk(over: Parameters<typeof auditOptions>[1] = {}): Promise<{ f: Fixture; w: AuditLogWriter; traps: { remove(): void } }> {
  const f = fixture();
  const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { segmentMaxBytes: 2000, checkpointEvery: 1_000_000, ...over }));
  await w.append(sampleEvent(0));
  return { f, w, traps: trapNextSegments(f) };
}

function segPath(f: Fixture, i: number): string {
  const segs = listSegments(f.dir);
  return path.join(f.dir, segs[i < 0 ? segs.length + i : i]);
}

function lines(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').slice(0, -1);
}

function writeLines(file: string, ls: string[]): void {
  fs.writeFileSync(file, ls.map((l) => l + '\n').join(''));
}

describe('audit log: chain, checkpoints, verify', () => {
  it('appends durable, chained records and verifies with only the public key', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile));
    const r1 = await w.append(sampleEvent(1));
    const r2 = await w.append(sampleEvent(2));
    expect(r1.seq).toBe(1);
    expect(r2.seq).toBe(2);
    await w.close();
    const raw = lines(segPath(f, 0));
    const [l1, l2] = raw.map((l) => JSON.parse(l));
    expect(l1.prev).toBe('0'.repeat(64));
    expect(l2.prev).toBe(l1.hash);
    expect(l1.hash).toBe(r1.hash);
    // The hash is SHA-256 over seq + prev + the event's bytes as stored, which are its canonical JSON: the
    // hash can be recomputed from the parsed event as well as from the line.
    const eventBytes = raw[1].slice(raw[1].indexOf('"event":') + 8, -1);
    expect(eventBytes).toBe(canonicalJsonReference(l2.event));
    const expected = crypto.createHash('sha256').update(`vigil-audit-v1\n2\n${l1.hash}\n${canonicalJson(l2.event)}`).digest('hex');
    expect(l2.hash).toBe(expected);
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res).toMatchObject({ ok: true, records: 3, segments: 1, checkpoints: 1 });
  });

  it('canonical JSON sorts keys at every level and matches the reference encoder', () => {
    const v = { b: 1, a: { d: [3, { z: 1, y: undefined, x: 'é"\n' }], c: null }, '10': 1, '9': 2, n: 2n, t: new Date(0) };
    expect(canonicalJson(v)).toBe('{"10":1,"9":2,"a":{"c":null,"d":[3,{"x":"é\\"\\n","z":1}]},"b":1,"n":"2","t":"1970-01-01T00:00:00.000Z"}');
    for (let i = 0; i < 50; i++) {
      const e = sampleEvent(i);
      expect(canonicalJson(e)).toBe(canonicalJsonReference(e));
    }
  });

  it('canonical JSON equals the reference encoder on random values (sorted, unsorted, index keys, odd strings, toJSON)', () => {
    let seed = 0x9e3779b9;
    const rand = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const strings = ['', 'a', 'b', 'zz', '10', '9', '0', 'é', '€🙂', 'q"q', 'b\\s', 'nl\n', '\u0000', '\u001f', 'lone \ud800', '\udc00x', '\u2028', 'toJSON', '__proto__x'];
    const numbers = [0, -0, 1, -1.5, 0.42, 1e21, 1e-7, Number.MAX_SAFE_INTEGER, NaN, Infinity, -Infinity];
    class Box {
      constructor(readonly v: number) {}
    }
    const value = (depth: number): unknown => {
      const r = rand();
      if (depth > 3 || r < 0.35) {
        return pick<unknown>([pick(strings), pick(numbers), true, false, null, undefined, 12n, -3n, () => 1, Symbol('s')]);
      }
      if (r < 0.5) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
      if (r < 0.55) return pick<unknown>([new Date(Math.floor(rand() * 1e12)), new Box(3), new String('ab'), new Number(4), new Boolean(false), new Map([[1, 2]]), Object.assign(Object.create({ inherited: 1 }), { own: 2 }), { toJSON: () => ({ b: 1, a: 2 }) }, Object.assign([1, 2], { toJSON: () => 'arr' })]);
      const keys = Array.from({ length: Math.floor(rand() * 5) }, () => pick(strings));
      if (rand() < 0.6) keys.sort(); // the common case: keys already in order
      const o: Record<string, unknown> = rand() < 0.1 ? Object.create(null) : {};
      for (const k of keys) o[k] = value(depth + 1);
      return o;
    };
    for (let i = 0; i < 3000; i++) {
      const v = value(0);
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
      expect(canonicalJson(v)).toBe(canonicalJsonReference(v));
    }
  });

  it('the piecewise event encoder writes exactly the canonical JSON (escapes, bigint, frozen and odd events)', () => {
    const strings = ['plain', 'é €🙂', 'quote " and \\ backslash', 'ctl \u0000\u001f\n', 'lone \ud800 surrogate', 'x'.repeat(300) + '"'];
    for (const [i, s] of strings.entries()) {
      for (const freeze of [false, true]) {
        const f = <T extends object>(o: T): T => (freeze ? Object.freeze(o) : o);
        const e = sampleEvent(i, {
          session_id: s,
          actor: f({ user: s, roles: [s], cert_serial: s }),
          source: f({ ip: s, port: i }),
          target: f({ protocol: 'postgres', name: s, database: s }),
          details: { text: s, n: 1.5, nested: [{ z: s, a: 1 }], big: 2n ** 70n, d: new Date(0) },
        });
        expect(encodeEvent(e)).toBe(canonicalJsonReference(e));
        expect(encodeEvent(e)).toBe(encodeEvent(e)); // from the cache the second time when frozen
        expect(encodeEvent(e).endsWith('"type":"db.query"}')).toBe(true);
      }
    }
    // An event that did not come from createEvent (members beyond the envelope, e.g. from the spool).
    const odd = { ...sampleEvent(1), extra: { b: 1, a: 2 } } as unknown as Parameters<typeof encodeEvent>[0];
    expect(encodeEvent(odd)).toBe(canonicalJsonReference(odd));
  });

  it('the JSON of a frozen envelope part is reused; an unfrozen part is encoded afresh every time', () => {
    const target = Object.freeze({ name: 'orders-db', protocol: 'postgres', database: 'orders' });
    const source = { ip: '10.0.0.7', port: 1 };
    const actor = Object.freeze({ user: 'a', roles: ['r'] });
    const first = JSON.parse(encodeEvent(sampleEvent(1, { actor, target, source })));
    source.port = 2; // a session's mutable part: must never be served from a cache
    const second = JSON.parse(encodeEvent(sampleEvent(2, { actor, target, source })));
    expect(first.target).toEqual(target);
    expect(second.target).toEqual(target);
    expect(first.source.port).toBe(1);
    expect(second.source.port).toBe(2);
    expect(() => {
      (target as { database: string }).database = 'other';
    }).toThrow(TypeError);
  });

  it('a record encoded in place is byte for byte the documented line (ASCII and non-ASCII events)', () => {
    const buf = Buffer.alloc(64 * 1024);
    let at = 5; // not at the start: the preamble is written over the line's own prefix, never before it
    let prev = ZERO_HASH;
    const unicode = sampleEvent(2, { details: { text: 'é €🙂 "q" \\ \u0000' }, actor: Object.freeze({ user: 'ü', roles: [] }), source: Object.freeze({ ip: '::1' }), target: Object.freeze({ name: '数据库', protocol: 'postgres' }) });
    for (const [i, e] of [sampleEvent(1), unicode, sampleEvent(123456789), unicode].entries()) {
      const json = encodeEvent(e);
      const seq = [1, 2, 9_999_999_999, 10_000_000_000][i];
      buf.fill(0xaa, at);
      // As one string, and as the writer does it: in pieces, cached ones copied as bytes.
      const { end, hash } = i % 2 ? encodeRecordInto(buf, at, seq, prev, eventPieces(e)) : encodeRecordInto(buf, at, seq, prev, json);
      expect(hash).toBe(recordHash(seq, prev, json));
      expect(buf.subarray(at, end).toString('utf8')).toBe(encodeRecord(seq, prev, hash, json));
      expect(end - at).toBeLessThanOrEqual(maxRecordBytes(i % 2 ? eventPieces(e) : json));
      prev = hash;
      at = end;
    }
  });

  it('signs a checkpoint every N events and at close; signatures verify with the public key', async () => {
    const f = fixture();
    await writeLog(f, 25, { checkpointEvery: 10, checkpointIntervalMs: 60_000 });
    const { records } = await searchAuditLog(f.dir, { type: 'audit.checkpoint' });
    expect(records.map((r) => r.event.details.reason)).toEqual(['count', 'count', 'close']);
    expect(records.map((r) => r.event.details.seq)).toEqual([10, 21, 27]);
    const pub = crypto.createPublicKey(f.publicPem);
    for (const r of records) {
      const d = r.event.details as { seq: number; head: string; sig: string };
      const payload = Buffer.from(`vigil-audit-checkpoint-v1\n${d.seq}\n${d.head}`);
      expect(crypto.verify(null, payload, pub, Buffer.from(d.sig, 'base64'))).toBe(true);
      expect(r.seq).toBe(d.seq + 1);
    }
    const head = JSON.parse(fs.readFileSync(path.join(f.dir, HEAD_FILE), 'utf8'));
    expect(head.seq).toBe(27);
  });

  it('signs a checkpoint on the interval while events flow', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { checkpointEvery: 1_000_000, checkpointIntervalMs: 100 }));
    await w.append(sampleEvent(1));
    await new Promise((r) => setTimeout(r, 350));
    const { records } = await searchAuditLog(f.dir, { type: 'audit.checkpoint' });
    expect(records.map((r) => r.event.details.reason)).toEqual(['interval']);
    // The live log verifies: the tail is covered.
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
    await w.close();
  });

  it('rotates segments by size, sealing each with a checkpoint naming the next segment', async () => {
    const f = fixture();
    await writeLog(f, 300, { segmentMaxBytes: 20_000 });
    const segs = listSegments(f.dir);
    expect(segs.length).toBeGreaterThan(5);
    for (const s of segs.slice(0, -1)) {
      expect(fs.statSync(path.join(f.dir, s)).size).toBeLessThan(20_000 + 4000);
      const last = JSON.parse(lines(path.join(f.dir, s)).at(-1)!);
      expect(last.event.type).toBe('audit.checkpoint');
      expect(segs).toContain(last.event.details.next_segment);
      expect(fs.existsSync(path.join(f.dir, `${s}.meta`))).toBe(true);
    }
    expect(verifyAuditLog(f.dir, f.publicPem)).toMatchObject({ ok: true, segments: segs.length });
  });
});

describe('audit log: rotation by UTC day', () => {
  it('starts a new segment when the UTC day changes', async () => {
    const f = fixture();
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.UTC(2026, 2, 1, 23, 59, 59));
      const w = await openAuditLog(f.dir, auditOptions(f.keyFile));
      await w.append(sampleEvent(1));
      await w.append(sampleEvent(2));
      vi.setSystemTime(Date.UTC(2026, 2, 2, 0, 0, 1));
      await w.append(sampleEvent(3));
      await w.close();
    } finally {
      vi.useRealTimers();
    }
    expect(listSegments(f.dir)).toEqual(['seg-0000000000000001-20260301.jsonl', 'seg-0000000000000004-20260302.jsonl']);
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
    // A writer reopened on a later day does not keep appending to the old day's segment.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(Date.UTC(2026, 2, 4, 10, 0, 0));
      const w = await openAuditLog(f.dir, auditOptions(f.keyFile));
      await w.append(sampleEvent(4));
      await w.close();
    } finally {
      vi.useRealTimers();
    }
    expect(listSegments(f.dir).at(-1)).toMatch(/-20260304\.jsonl$/);
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
  });
});

describe('audit log: tampering is detected and named', () => {
  async function sealed(): Promise<Fixture> {
    const f = fixture();
    await writeLog(f, 200, { segmentMaxBytes: 30_000, checkpointEvery: 50 });
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
    return f;
  }

  it('a flipped byte', async () => {
    const f = await sealed();
    const file = segPath(f, 1);
    const ls = lines(file);
    const rec = JSON.parse(ls[3]);
    ls[3] = ls[3].replace('SELECT', 'SELECU');
    writeLines(file, ls);
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.ok).toBe(false);
    expect(res.firstBad).toMatchObject({ kind: 'hash-mismatch', segment: path.basename(file), line: 4, seq: rec.seq });
    expect(res.firstBad!.problem).toContain(`seq ${rec.seq}`);
  });

  it('a flipped byte in a hash field breaks the chain', async () => {
    const f = await sealed();
    const file = segPath(f, 0);
    const buf = fs.readFileSync(file);
    const at = buf.indexOf('"hash":"') + 8;
    buf[at] = buf[at] === 0x61 ? 0x62 : 0x61;
    fs.writeFileSync(file, buf);
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.firstBad).toMatchObject({ kind: 'hash-mismatch', line: 1, seq: 1 });
  });

  it('a deleted record', async () => {
    const f = await sealed();
    const file = segPath(f, 1);
    const ls = lines(file);
    const gone = JSON.parse(ls[5]).seq;
    ls.splice(5, 1);
    writeLines(file, ls);
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.firstBad).toMatchObject({ kind: 'records-missing', seq: gone, line: 6 });
  });

  it('reordered records', async () => {
    const f = await sealed();
    const file = segPath(f, 1);
    const ls = lines(file);
    const a = JSON.parse(ls[2]).seq;
    [ls[2], ls[3]] = [ls[3], ls[2]];
    writeLines(file, ls);
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.firstBad).toMatchObject({ kind: 'reordered', seq: a + 1, line: 3 });
  });

  it('a rewritten record whose hashes were recomputed fails at the next signed checkpoint', async () => {
    const f = await sealed();
    const file = segPath(f, 0);
    const ls = lines(file).map((l) => JSON.parse(l));
    // Forge record 3 and re-chain everything after it with valid hashes (the attacker has no signing key).
    ls[2].event.actor.user = 'mallory';
    for (let i = 2; i < ls.length; i++) {
      if (i > 0) ls[i].prev = ls[i - 1].hash;
      ls[i].hash = crypto.createHash('sha256').update(`vigil-audit-v1\n${ls[i].seq}\n${ls[i].prev}\n${canonicalJson(ls[i].event)}`).digest('hex');
    }
    writeLines(file, ls.map((r) => `{"seq":${r.seq},"prev":"${r.prev}","hash":"${r.hash}","event":${canonicalJson(r.event)}}`));
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.firstBad).toMatchObject({ kind: 'bad-checkpoint' });
  });

  it('a truncated tail', async () => {
    const f = await sealed();
    const file = segPath(f, -1);
    const ls = lines(file);
    writeLines(file, ls.slice(0, -3));
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.ok).toBe(false);
    expect(['uncovered-tail', 'truncated']).toContain(res.firstBad!.kind);
  });

  it('a tail truncated exactly after an earlier checkpoint (caught by the signed head)', async () => {
    const f = fixture();
    await writeLog(f, 200, { checkpointEvery: 50 });
    const file = segPath(f, -1);
    const ls = lines(file);
    const lastCp = ls.map((l) => JSON.parse(l)).findLastIndex((r, i) => r.event.type === 'audit.checkpoint' && i < ls.length - 1);
    expect(lastCp).toBeGreaterThanOrEqual(0);
    writeLines(file, ls.slice(0, lastCp + 1));
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.firstBad).toMatchObject({ kind: 'truncated' });
  });

  for (const which of ['first', 'middle', 'last'] as const) {
    it(`a removed ${which} segment`, async () => {
      const f = await sealed();
      const segs = listSegments(f.dir);
      expect(segs.length).toBeGreaterThanOrEqual(4);
      const victim = which === 'first' ? segs[0] : which === 'last' ? segs.at(-1)! : segs[2];
      fs.rmSync(path.join(f.dir, victim));
      const res = verifyAuditLog(f.dir, f.publicPem);
      expect(res.ok).toBe(false);
      expect(res.firstBad!.kind).toBe('segment-missing');
      if (which !== 'first') expect(res.firstBad!.segment).toBe(victim);
      else expect(res.firstBad!.problem).toContain('first segment');
    });
  }

  it('a removed last segment is caught even when the signed head is removed too', async () => {
    const f = await sealed();
    fs.rmSync(segPath(f, -1));
    fs.rmSync(path.join(f.dir, HEAD_FILE));
    expect(verifyAuditLog(f.dir, f.publicPem).firstBad!.kind).toBe('segment-missing');
  });

  it('a checkpoint signed by another key', async () => {
    const f = await sealed();
    const other = makeSigningKey(path.join(tempDir(), 'other'));
    const res = verifyAuditLog(f.dir, other.publicPem);
    expect(res.firstBad).toMatchObject({ kind: 'bad-head' });
    fs.rmSync(path.join(f.dir, HEAD_FILE));
    expect(verifyAuditLog(f.dir, other.publicPem).firstBad).toMatchObject({ kind: 'bad-checkpoint' });
  });
});

describe('audit log: single writer, fail closed, spool', () => {
  it('a second writer is refused while the first lives; a stale lock from a dead pid is taken over', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile));
    await expect(openAuditLog(f.dir, auditOptions(f.keyFile))).rejects.toMatchObject({ code: 'VIGIL_AUDIT_LOCKED' });
    await w.close();
    // A lock left by a process that no longer exists.
    const { spawnSync } = await import('node:child_process');
    const dead = spawnSync('true').pid!;
    fs.writeFileSync(path.join(f.dir, 'writer.lock'), `${dead}\n`);
    const w2 = await openAuditLog(f.dir, auditOptions(f.keyFile));
    expect(fs.readFileSync(path.join(f.dir, 'writer.lock'), 'utf8').trim()).toBe(String(process.pid));
    await w2.close();
    expect(fs.existsSync(path.join(f.dir, 'writer.lock'))).toBe(false);
  });

  it('fails closed when the disk is full: appends reject with AuditUnavailableError, healthy goes false, the log says why', async () => {
    const logged: string[] = [];
    const log = pino({ level: 'error' }, new Writable({ write(c, _e, cb) { logged.push(c.toString()); cb(); } }));
    // Whichever segment comes next lands on a full device: every write to it fails with ENOSPC.
    const { f, w, traps } = await logBeforeFullDisk({ log });
    const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => w.append(sampleEvent(i))));
    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(AuditUnavailableError);
    expect(w.healthy).toBe(false);
    expect(w.failure).toBeInstanceOf(AuditUnavailableError);
    expect(w.failure!.message).toContain('ENOSPC');
    await expect(w.append(sampleEvent(99))).rejects.toBeInstanceOf(AuditUnavailableError);
    expect(logged.join('')).toContain('failing closed');
    await w.close();
    traps.remove();
    // Every append that resolved is in the log.
    const ok = results.filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<{ seq: number }>).value.seq);
    const { records } = await searchAuditLog(f.dir, {});
    const seqs = new Set(records.map((r) => r.seq));
    for (const s of ok) expect(seqs.has(s)).toBe(true);
  });

  it('fails closed at open when the log directory cannot be created', async () => {
    const f = fixture();
    fs.mkdirSync(path.dirname(f.dir), { recursive: true });
    fs.writeFileSync(f.dir, 'a file where the audit directory should be');
    await expect(openAuditLog(f.dir, auditOptions(f.keyFile))).rejects.toThrow();
  });

  it('a second opener gets the spool client; its events land in the chain (noticed through the watch, not the poll)', async () => {
    const f = fixture();
    const w = (await openAuditLog(f.dir, auditOptions(f.keyFile, { spoolPollMs: 3_600_000 }))) as AuditLogWriter;
    await w.append(sampleEvent(0));
    // The gateway's live observers (stream, metrics) hear of the CLI's events too.
    const observed: string[] = [];
    new EventBus(w).subscribe((e) => observed.push(e.id));
    const cli = await openAuditForCli(f.dir, auditOptions(f.keyFile));
    expect(cli.mode).toBe('spool');
    const e1 = sampleEvent(1, { type: 'cert.issued' });
    const e2 = sampleEvent(2, { type: 'cert.revoked' });
    const [r1, r2] = await Promise.all([cli.append(e1), cli.append(e2)]);
    expect(r1.seq).toBeGreaterThan(1);
    expect(r2.seq).not.toBe(r1.seq);
    expect(observed.sort()).toEqual([e1.id, e2.id].sort());
    await cli.close();
    await w.close();
    const { records } = await searchAuditLog(f.dir, { type: 'cert.' });
    expect(records.map((r) => r.event.id).sort()).toEqual([e1.id, e2.id].sort());
    expect(records.find((r) => r.event.id === e1.id)!.seq).toBe(r1.seq);
    expect(fs.readdirSync(path.join(f.dir, 'spool'))).toEqual([]);
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
  });

  it('the writer drains the spool at open; a spool client with no writer times out with a clear error', async () => {
    const f = fixture();
    const hold = await openAuditLog(f.dir, auditOptions(f.keyFile, { spoolPollMs: 3_600_000, spoolWatch: false }));
    const cli = await openAuditForCli(f.dir, { ...auditOptions(f.keyFile), spoolTimeoutMs: 300 });
    const e = sampleEvent(7, { type: 'lock.created' });
    const pending = cli.append(e);
    // The holder never polls (huge interval): the client gives up.
    await expect(pending).rejects.toThrow(/did not record the event/);
    expect(cli.healthy).toBe(false);
    await hold.close();
    // A spooled event left behind is picked up by the next writer at open.
    const slow = await openAuditForCli(f.dir, { ...auditOptions(f.keyFile), spoolTimeoutMs: 5000 });
    expect(slow.mode).toBe('writer');
    await slow.close();
    const { openSpoolClient } = await import('../../recorder/audit/spool.ts');
    const lockHolder = await openAuditLog(f.dir, auditOptions(f.keyFile, { spoolPollMs: 3_600_000, spoolWatch: false }));
    const client = openSpoolClient(f.dir, 5000);
    const e2 = sampleEvent(8, { type: 'lock.deleted' });
    const p2 = client.append(e2);
    await new Promise((r) => setTimeout(r, 100));
    await lockHolder.close(); // leaves the event in the spool
    const next = await openAuditLog(f.dir, auditOptions(f.keyFile));
    const r2 = await p2;
    await next.close();
    const { records } = await searchAuditLog(f.dir, { type: 'lock.' });
    expect(records.map((r) => r.event.id)).toEqual([e2.id]);
    expect(records[0].seq).toBe(r2.seq);
  });
});

describe('audit log: search and tail', () => {
  it('a time range skips sealed segments outside it without reading them through', async () => {
    const f = fixture();
    // Events (and the checkpoints sealing their segments) one minute apart, on a January day.
    const day = Date.UTC(2026, 0, 10);
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(day);
      const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { segmentMaxBytes: 8000 }));
      for (let i = 0; i < 120; i++) {
        vi.setSystemTime(day + i * 60_000);
        await w.append(sampleEvent(i));
      }
      await w.close();
    } finally {
      vi.useRealTimers();
    }
    const segs = listSegments(f.dir);
    expect(segs.length).toBeGreaterThan(6);
    const since = new Date(day + 100 * 60_000);
    const until = new Date(day + 110 * 60_000);
    // Every segment whose events are all outside the range keeps only its first and last record (what a
    // reader checks its .meta against before trusting it); the records between become unreadable: had
    // search read one through, it would fail on them.
    const untouched: string[] = [];
    for (const s of segs) {
      const meta = JSON.parse(fs.existsSync(path.join(f.dir, `${s}.meta`)) ? fs.readFileSync(path.join(f.dir, `${s}.meta`), 'utf8') : 'null');
      if (meta && (meta.max_time < since.toISOString().replace('Z', '000Z') || meta.min_time > until.toISOString().replace('Z', '000Z'))) {
        const lines = fs.readFileSync(path.join(f.dir, s), 'utf8').split('\n').filter(Boolean);
        const middle = lines.slice(1, -1).map(() => 'not a record');
        fs.writeFileSync(path.join(f.dir, s), [lines[0], ...middle, lines.at(-1)].join('\n') + '\n');
        untouched.push(s);
      }
    }
    expect(untouched.length).toBeGreaterThan(3);
    const res = await searchAuditLog(f.dir, { since, until, type: 'db.' });
    expect(res.records.map((r) => r.event.details.statement as string).map((s) => Number(/\/\* (\d+)/.exec(s)![1]))).toEqual(
      Array.from({ length: 11 }, (_, i) => 100 + i),
    );
    expect(res.segmentsSkipped).toBe(untouched.length);
    expect(res.segmentsScanned).toBe(segs.length - untouched.length);
  });

  it('filters by user, target, type prefix and session, with a limit keeping the newest', async () => {
    const f = fixture();
    await writeLog(f, 300);
    const all = await searchAuditLog(f.dir, { user: 'alice', target: 'orders-db', type: 'db.q', session: 'sess-1' });
    expect(all.records.length).toBeGreaterThan(0);
    for (const r of all.records) {
      expect(r.event.actor.user).toBe('alice');
      expect(r.event.target.name).toBe('orders-db');
      expect(r.event.session_id).toBe('sess-1');
    }
    const limited = await searchAuditLog(f.dir, { user: 'alice', limit: 5 });
    const every = await searchAuditLog(f.dir, { user: 'alice' });
    expect(limited.records.map((r) => r.seq)).toEqual(every.records.slice(-5).map((r) => r.seq));
  });

  it('tail returns the newest records and follows new ones', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { segmentMaxBytes: 5000 }));
    for (let i = 0; i < 30; i++) await w.append(sampleEvent(i));
    const got: number[] = [];
    for await (const r of tailAuditLog(f.dir, { lines: 5 })) got.push(r.seq);
    expect(got).toEqual([w.head.seq - 4, w.head.seq - 3, w.head.seq - 2, w.head.seq - 1, w.head.seq]);
    const ac = new AbortController();
    const followed: string[] = [];
    const done = (async () => {
      for await (const r of tailAuditLog(f.dir, { lines: 0, follow: true, pollMs: 20, signal: ac.signal })) {
        if (r.event.type !== 'audit.checkpoint') followed.push(r.event.id);
        if (followed.length === 20) ac.abort();
      }
    })();
    await new Promise((r) => setTimeout(r, 60));
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const e = sampleEvent(100 + i);
      ids.push(e.id);
      await w.append(e); // crosses several segment rotations
    }
    await done;
    expect(followed).toEqual(ids);
    await w.close();
  });
});

describe('audit log: group commit window', () => {
  it('appends arriving one at a time within the window share one commit, acknowledged only after it', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { commitWindowMs: 300, checkpointEvery: 1_000_000, checkpointIntervalMs: 60_000 }));
    const t0 = performance.now();
    await w.append(sampleEvent(0)); // first commit starts at once
    const resolvedAt: number[] = [];
    const later = [1, 2, 3].map(async (i) => {
      await new Promise((r) => setTimeout(r, i * 5));
      await w.append(sampleEvent(i));
      resolvedAt.push(performance.now());
    });
    await Promise.all(later);
    // All three waited for the window after the first commit and were acknowledged by one commit.
    expect(Math.min(...resolvedAt) - t0).toBeGreaterThanOrEqual(250);
    expect(Math.max(...resolvedAt) - Math.min(...resolvedAt)).toBeLessThan(50);
    await w.close();
    const { records } = await searchAuditLog(f.dir, {});
    expect(records.filter((r) => r.event.type === 'db.query')).toHaveLength(4);
  });
});

describe('audit log: a busy log keeps the disk busy', () => {
  it("starts the next group's write before the callers of the group just written hear of it", async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { commitWindowMs: 0, checkpointEvery: 1_000_000, checkpointIntervalMs: 60_000 }));
    const seen: string[] = [];
    let durable: CommitMessage | undefined;
    const onCommit = (m: unknown) => {
      const c = m as CommitMessage;
      seen.push(`${c.phase}:${c.lastSeq}`);
      if (c.phase === 'durable') durable = c;
    };
    commitChannel.subscribe(onCommit);
    try {
      const first = w.append(sampleEvent(1));
      // The commit was arranged with setImmediate before this one: group 1's write is issued, and it cannot
      // be heard of before the loop's next poll phase.
      await new Promise((r) => setImmediate(r));
      expect(seen).toEqual(['write:1']);
      const second = w.append(sampleEvent(2)); // group 2 forms while group 1 is on its way to disk
      // What group 1's caller finds when it hears: group 2 already issued. (Without the hand-over the next
      // write waited for the event loop to come round, after every continuation of group 1 had run.)
      const atFirst = await first.then(() => [...seen]);
      expect(atFirst).toEqual(['write:1', 'durable:1', 'write:2']);
      await second;
      expect(durable).toMatchObject({ phase: 'durable', lastSeq: 2 });
      expect(durable!.bytes).toBeGreaterThan(100);
      expect(durable!.ms).toBeGreaterThanOrEqual(0);
    } finally {
      commitChannel.unsubscribe(onCommit);
      await w.close();
    }
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
  });
});

/** Median distance between consecutive times (ms). */
function medianGap(times: number[]): number {
  const gaps = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
  return gaps.length ? gaps[Math.floor(gaps.length / 2)] : Infinity;
}

describe('audit log: commit window under a steady trickle', () => {
  it('events arriving while a commit runs wait for the window too: at most one commit per window', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { commitWindowMs: 100, checkpointEvery: 1_000_000, checkpointIntervalMs: 60_000 }));
    const acks: number[] = [];
    const pending: Promise<void>[] = [];
    const t0 = performance.now();
    while (performance.now() - t0 < 1000) {
      pending.push(w.append(sampleEvent(pending.length)).then(() => void acks.push(performance.now())));
      await new Promise((r) => setTimeout(r, 2));
    }
    await Promise.all(pending);
    await w.close();
    // Acknowledgements come in bursts, one per commit; bursts are at least a window apart.
    const bursts = acks.sort((a, b) => a - b).filter((t, i) => i === 0 || t - acks[i - 1] > 1);
    expect(pending.length).toBeGreaterThan(100);
    // ~10 commits (a GC pause may split a burst's acknowledgements); without the window, hundreds.
    expect(bursts.length).toBeLessThanOrEqual(20);
    expect(medianGap(bursts)).toBeGreaterThanOrEqual(90);
  });
});

describe('audit log: background commit window for fire-and-forget events', () => {
  it('a trickle of appendLater events commits once per background window; an awaited append brings it forward', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { commitWindowMs: 10, backgroundWindowMs: 200, checkpointEvery: 1_000_000, checkpointIntervalMs: 60_000 }));
    await w.append(sampleEvent(0)); // a commit just happened
    const durable: number[] = [];
    const t0 = performance.now();
    let n = 0;
    while (performance.now() - t0 < 900) {
      w.appendLater!(sampleEvent(++n), () => void durable.push(performance.now()), undefined);
      await new Promise((r) => setTimeout(r, 3));
    }
    await vi.waitFor(() => expect(durable).toHaveLength(n), { timeout: 2000 });
    const bursts = durable.sort((a, b) => a - b).filter((t, i) => i === 0 || t - durable[i - 1] > 1);
    // ~5 commits; with only the short window it would be dozens.
    expect(bursts.length).toBeLessThanOrEqual(12);
    expect(medianGap(bursts)).toBeGreaterThanOrEqual(180);
    // Background events are queued; an awaited append joins their group and commits within the short window.
    await new Promise((r) => setTimeout(r, 250));
    let laterDurable = 0;
    w.appendLater!(sampleEvent(1000), () => void (laterDurable = performance.now()), undefined);
    const t1 = performance.now();
    await w.append(sampleEvent(1001));
    const awaited = performance.now() - t1;
    expect(awaited).toBeLessThan(150);
    expect(laterDurable).toBeGreaterThan(0); // same group: durable with the awaited one
    await w.close();
  });
});

describe('audit log: appendLater and EventBus.record (no promise per event)', () => {
  it('calls back once per event after its group commit is durable, in chain order with append()', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { checkpointEvery: 1_000_000 }));
    const heard: { err: Error | undefined; id: string; ctx: number; onDisk: boolean }[] = [];
    const done = new Promise<void>((resolve) => {
      const cb = (err: Error | undefined, e: { id: string }, ctx: number) => {
        // Durable means on disk before the callback: the record is already in its segment file.
        heard.push({ err, id: e.id, ctx, onDisk: fs.readFileSync(segPath(f, -1), 'utf8').includes(e.id) });
        if (heard.length === 3) resolve();
      };
      w.appendLater!(sampleEvent(1), cb, 1);
      void w.append(sampleEvent(2));
      w.appendLater!(sampleEvent(3), cb, 3);
      w.appendLater!(sampleEvent(4), cb, 4);
      expect(heard).toHaveLength(0); // never synchronously
    });
    await done;
    expect(heard.map((h) => [h.err, h.ctx, h.onDisk])).toEqual([[undefined, 1, true], [undefined, 3, true], [undefined, 4, true]]);
    await w.close();
    const { records } = await searchAuditLog(f.dir, { type: 'db.query' });
    expect(records.map((r) => (r.event.details as { statement: string }).statement)).toEqual([1, 2, 3, 4].map((i) => sampleEvent(i).details.statement));
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
  });

  it('queued appendLater events: one that cannot be encoded hears its error, the rest commit; checkpoint() covers them', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { checkpointEvery: 1_000_000, checkpointIntervalMs: 60_000 }));
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const heard: [number, string | undefined][] = [];
    const cb = (err: Error | undefined, _e: unknown, ctx: number) => void heard.push([ctx, err?.constructor.name]);
    w.appendLater!(sampleEvent(1), cb, 1);
    w.appendLater!(sampleEvent(2, { details: cyclic }), cb, 2);
    w.appendLater!(sampleEvent(3), cb, 3);
    // The checkpoint is chained after the queued events, so its signed head covers both good ones.
    const receipt = await w.checkpoint();
    expect(receipt?.seq).toBe(3);
    await w.close();
    expect(heard.sort((a, b) => a[0] - b[0])).toEqual([[1, undefined], [2, 'RangeError'], [3, undefined]]);
    const { records } = await searchAuditLog(f.dir, { type: 'db.query' });
    expect(records.map((r) => r.seq)).toEqual([1, 2]);
    expect(verifyAuditLog(f.dir, f.publicPem).ok).toBe(true);
  });

  it('a group larger than its buffer is written from several chunks in order, across a rotation, and verifies', async () => {
    const f = fixture();
    // 64 KiB first buffers, 300 KiB segments: one group of ~1.5 MiB spans many chunks and several segments.
    const log = await openAuditLog(f.dir, auditOptions(f.keyFile, { segmentMaxBytes: 300 * 1024, checkpointEvery: 100_000, checkpointIntervalMs: 60_000 }));
    const big = 'x'.repeat(1500);
    const acks: number[] = [];
    for (let i = 0; i < 1000; i++) log.appendLater!(sampleEvent(i, { details: { i, pad: big } }), (err) => acks.push(err ? -1 : i), undefined);
    await log.close();
    expect(acks).toHaveLength(1000);
    expect(acks.every((a) => a >= 0)).toBe(true);
    const res = verifyAuditLog(f.dir, f.publicPem);
    expect(res.ok).toBe(true);
    expect(res.segments).toBeGreaterThan(3);
    const { records } = await searchAuditLog(f.dir, { type: 'db.query', limit: 5000 });
    expect(records.map((r) => r.event.details.i)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('writeAllv finishes short writes: every byte once, in order', async () => {
    const written: Buffer[] = [];
    // A handle whose writev accepts at most 7 bytes per call, as a kernel may under pressure.
    const handle = {
      async writev(bufs: Buffer[]) {
        const all = Buffer.concat(bufs).subarray(0, 7);
        written.push(Buffer.from(all));
        return { bytesWritten: all.length, buffers: bufs };
      },
      async write(buf: Buffer, off: number, len: number) {
        const part = buf.subarray(off, off + Math.min(len, 7));
        written.push(Buffer.from(part));
        return { bytesWritten: part.length, buffer: buf };
      },
    } as unknown as import('node:fs/promises').FileHandle;
    const bufs = [Buffer.from('hello, '), Buffer.alloc(0), Buffer.from('world'), Buffer.from('! and some more text')];
    await writeAllv(handle, bufs);
    expect(Buffer.concat(written).toString()).toBe('hello, world! and some more text');
    written.length = 0;
    await writeAllv(handle, [Buffer.from('single buffer path')]);
    expect(Buffer.concat(written).toString()).toBe('single buffer path');
  });

  it('a failed write reaches every pending callback with AuditUnavailableError, and later appends at once', async () => {
    const { w, traps } = await logBeforeFullDisk();
    const errors: (Error | undefined)[] = [];
    await new Promise<void>((resolve) => {
      for (let i = 0; i < 10; i++) w.appendLater!(sampleEvent(i), (err) => { errors.push(err); if (errors.length === 10) resolve(); }, undefined);
    });
    expect(errors.some((e) => e instanceof AuditUnavailableError)).toBe(true);
    expect(w.healthy).toBe(false);
    const after = await new Promise<Error | undefined>((resolve) => w.appendLater!(sampleEvent(11), (err) => resolve(err), undefined));
    expect(after).toBeInstanceOf(AuditUnavailableError);
    await w.close();
    traps.remove();
  });

  it('events queued while a failing group is being written hear the failure too', async () => {
    const { w, traps } = await logBeforeFullDisk();
    const heard: (Error | undefined)[] = [];
    const cb = (err: Error | undefined) => void heard.push(err);
    for (let i = 0; i < 10; i++) w.appendLater!(sampleEvent(i), cb, undefined);
    // An awaited append commits the group at once. One more event per event-loop turn meanwhile: those that
    // arrive while the group's write is in flight are still queued (not encoded) when it fails.
    const failed = w.append(sampleEvent(10)).then(() => undefined, (e: Error) => e);
    let sent = 0;
    let pumping = true;
    const pump = () => {
      if (!pumping) return;
      w.appendLater!(sampleEvent(100 + sent++), cb, undefined);
      setImmediate(pump);
    };
    pump();
    expect(await failed).toBeInstanceOf(AuditUnavailableError);
    pumping = false;
    await new Promise((r) => setTimeout(r, 50));
    expect(sent).toBeGreaterThan(1);
    expect(heard).toHaveLength(10 + sent);
    expect(heard.every((e) => e instanceof AuditUnavailableError)).toBe(true);
    await w.close();
    traps.remove();
  });

  it('EventBus.record publishes to subscribers only once durable, and reports a failed write to onFailure', async () => {
    const f = fixture();
    const w = await openAuditLog(f.dir, auditOptions(f.keyFile, { commitWindowMs: 200, checkpointEvery: 1_000_000, segmentMaxBytes: 4000 }));
    const bus = new EventBus(w);
    await bus.emit({ type: 'db.query', outcome: 'success', actor: { user: 'a', roles: [] }, source: { ip: '1.2.3.4' }, target: { name: 't', protocol: 'postgres' } });
    const seen: string[] = [];
    bus.subscribe((e) => seen.push(String(e.details.n)));
    const input = (n: number) => ({ type: 'db.query' as const, outcome: 'success' as const, actor: { user: 'a', roles: [] }, source: { ip: '1.2.3.4' }, target: { name: 't', protocol: 'postgres' }, details: { n } });
    const failures: Error[] = [];
    bus.record(input(1), (e) => failures.push(e));
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([]); // inside the commit window: not durable yet, not published
    await vi.waitFor(() => expect(seen).toEqual(['1']), { timeout: 2000 });
    const traps = trapNextSegments(f);
    for (let i = 2; i < 40; i++) bus.record(input(i), (e) => failures.push(e));
    await vi.waitFor(() => expect(failures.length).toBeGreaterThan(0), { timeout: 2000 });
    expect(failures[0]).toBeInstanceOf(AuditUnavailableError);
    expect(bus.healthy).toBe(false);
    await w.close();
    traps.remove();
  });
});
