import { describe, it, expect } from 'vitest';
import { monotonicFactory, decodeTime } from 'ulid';
import { newId } from '../../src/ids.ts';

const ULID = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

describe('newId (ULID)', () => {
  it('spells the time as the ulid package decodes it, in Crockford base32', () => {
    const before = Date.now();
    const id = newId();
    const after = Date.now();
    expect(id).toMatch(ULID);
    expect(decodeTime(id)).toBeGreaterThanOrEqual(before);
    expect(decodeTime(id)).toBeLessThanOrEqual(after);
    const seeded = newId(Date.UTC(2031, 0, 2, 3, 4, 5, 678));
    expect(decodeTime(seeded)).toBe(Date.UTC(2031, 0, 2, 3, 4, 5, 678));
    // The same time prefix as the reference implementation's for that time.
    expect(seeded.slice(0, 10)).toBe(monotonicFactory()(Date.UTC(2031, 0, 2, 3, 4, 5, 678)).slice(0, 10));
  });

  it('sorts in creation order, also past 2^20 ids in one millisecond (the low part carries)', () => {
    const t = Date.UTC(2032, 5, 6, 7, 8, 9, 10);
    const ids: string[] = [];
    for (let i = 0; i < 2 ** 20 + 5000; i++) ids.push(newId(t));
    for (let i = 1; i < ids.length; i++) {
      if (!(ids[i - 1]! < ids[i]!)) throw new Error(`not increasing at ${i}: ${ids[i - 1]} then ${ids[i]}`);
    }
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of [ids[0]!, ids[2 ** 20]!, ids.at(-1)!]) {
      expect(id).toMatch(ULID);
      expect(decodeTime(id)).toBe(t);
    }
    // A seed earlier than the last one keeps the last time (monotonic), as the ulid package does.
    const earlier = newId(t - 1000);
    expect(decodeTime(earlier)).toBe(t);
    expect(earlier > ids.at(-1)!).toBe(true);
  });

  it('draws fresh randomness for each new millisecond', () => {
    const a = newId(Date.UTC(2033, 0, 1));
    const b = newId(Date.UTC(2033, 0, 1) + 1);
    expect(a.slice(10)).not.toBe(b.slice(10));
    expect(b > a).toBe(true);
  });
});
