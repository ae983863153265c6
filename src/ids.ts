import crypto from 'node:crypto';

/**
 * ULIDs (https://github.com/ulid/spec) for events, sessions, connections and requests: 10 characters of
 * millisecond time and 16 of randomness, Crockford base32. Monotonic like the ulid package's factory: ids
 * made within one millisecond (or with a seed time not after the last one) keep the last time and add one
 * to the random part, so they sort in creation order.
 *
 * Every recorded statement gets one, so this is on the audit hot path. The ulid package re-encodes all 26
 * characters and increments the random part character by character on strings (~1 µs per id, 1-2 % of
 * a gateway's CPU per statement); here the first 22 characters are built once per millisecond and only
 * the last four (20 bits) change per id: two table lookups. Randomness comes from a pooled buffer refilled
 * 4 KiB at a time (asking the OS per character cost ~40 µs per id).
 */
const ENCODING = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** All pairs of base32 characters, by their 10-bit value. */
const PAIRS: string[] = Array.from({ length: 1024 }, (_, i) => ENCODING[i >> 5]! + ENCODING[i & 31]!);
const LOW_BITS = 20;
const LOW_LIMIT = 2 ** LOW_BITS;
const MAX_TIME = 2 ** 48 - 1;

const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let poolPos = POOL_SIZE;

/** One uniform base32 digit (0-31): 256 is a multiple of 32, so masking a random byte keeps it uniform. */
function randomDigit(): number {
  if (poolPos >= POOL_SIZE) {
    crypto.randomFillSync(pool);
    poolPos = 0;
  }
  return pool[poolPos++]! & 31;
}

let lastTime = -1;
/** Time (10 characters) and the first 12 random characters, as digits and as the string they spell. */
const high: number[] = new Array(22).fill(0);
let highText = '';
/** The last 4 random characters, as a number below 2^20. */
let low = 0;

function encodeTime(time: number): void {
  for (let i = 9, t = time; i >= 0; i--) {
    high[i] = t % 32;
    t = Math.floor(t / 32);
  }
}

function spellHigh(): void {
  let s = '';
  for (const d of high) s += ENCODING[d];
  highText = s;
}

/** Add one to the 12 high random characters (the low 20 bits wrapped): once per 2^20 ids in a millisecond. */
function carryIntoHigh(): void {
  for (let i = 21; i >= 10; i--) {
    if (high[i]! < 31) {
      high[i]!++;
      spellHigh();
      return;
    }
    high[i] = 0;
  }
  throw new RangeError('ULID random part exhausted within one millisecond');
}

export function newId(seedTime?: number): string {
  const seed = seedTime === undefined || Number.isNaN(seedTime) || seedTime === 0 ? Date.now() : seedTime;
  if (seed <= lastTime) {
    if (++low === LOW_LIMIT) {
      low = 0;
      carryIntoHigh();
    }
  } else {
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_TIME) throw new RangeError(`ULID time out of range: ${seed}`);
    lastTime = seed;
    encodeTime(seed);
    for (let i = 10; i < 22; i++) high[i] = randomDigit();
    spellHigh();
    low = (randomDigit() << 15) | (randomDigit() << 10) | (randomDigit() << 5) | randomDigit();
  }
  return highText + PAIRS[low >> 10] + PAIRS[low & 1023];
}
