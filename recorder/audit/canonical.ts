/**
 * Canonical JSON: object keys sorted by UTF-16 code units (as in RFC 8785), no whitespace, `undefined`
 * members dropped, non-finite numbers as null, bigint as a decimal string. The hash chain is computed
 * over this encoding, so any independent verifier can recompute a record's hash from the parsed event.
 *
 * Three paths, each producing the same bytes (a test checks them against the reference on random values):
 * - Direct: plain objects whose keys already come in sorted order (how the proxies build per-query
 *   details), arrays and primitives are written by `direct` below. On Node 20 this is about twice as fast
 *   as the native JSON.stringify for the small objects of a per-query event, the largest cost of an append.
 * - Sorted view: anything else without index-like keys gets a key-sorted view (reusing already-sorted
 *   objects) that the native JSON.stringify encodes.
 * - Slow: objects with array-index-like keys ("0", "12") — JSON.stringify always emits those first in
 *   numeric order — go through the reference encoder.
 */
class IndexKeys extends Error {}

const INDEX_KEY = /^(0|[1-9]\d*)$/;

function sortedView(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return typeof v === 'bigint' ? v.toString() : v;
  const withJson = v as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') return sortedView(withJson.toJSON());
  if (Array.isArray(v)) {
    let out: unknown[] = v;
    for (let i = 0; i < v.length; i++) {
      const c = sortedView(v[i]);
      if (c !== v[i]) {
        if (out === v) out = v.slice();
        out[i] = c;
      }
    }
    return out;
  }
  const obj = v as Record<string, unknown>;
  const keys = Object.keys(obj);
  let sorted = true;
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i];
    const c0 = k.charCodeAt(0);
    if (c0 >= 0x30 && c0 <= 0x39 && INDEX_KEY.test(k)) throw new IndexKeys();
    if (i > 0 && keys[i - 1] > k) sorted = false;
  }
  let out: Record<string, unknown> | undefined;
  if (!sorted) {
    keys.sort();
    out = {};
  }
  for (const k of keys) {
    const val = obj[k];
    const c = sortedView(val);
    if (out) out[k] = c;
    else if (c !== val) {
      // Copy lazily: everything before k is unchanged.
      out = {};
      for (const k2 of keys) {
        if (k2 === k) break;
        out[k2] = obj[k2];
      }
      out[k] = c;
    }
  }
  return out ?? obj;
}

function slowCanonical(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? JSON.stringify(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return JSON.stringify(value.toString());
    case 'object':
      break;
    default:
      return 'null';
  }
  if (value === null) return 'null';
  const withJson = value as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') return slowCanonical(withJson.toJSON());
  // Boxed primitives are written as their value, as JSON.stringify does.
  if (value instanceof Number || value instanceof String || value instanceof Boolean) return slowCanonical(value.valueOf());
  if (Array.isArray(value)) return '[' + value.map((x) => slowCanonical(x)).join(',') + ']';
  const obj = value as Record<string, unknown>;
  const parts: string[] = [];
  for (const k of Object.keys(obj).sort()) {
    const v = obj[k];
    if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
    parts.push(JSON.stringify(k) + ':' + slowCanonical(v));
  }
  return '{' + parts.join(',') + '}';
}

/** Thrown inside `direct` when the value needs one of the general paths. */
class NotDirect extends Error {}
const NOT_DIRECT = new NotDirect();

/** What JSON.stringify would escape (or, for surrogates, might): such strings are left to it. */
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/;
const MAX_DIRECT_DEPTH = 32;

function directString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
}

/**
 * `"key":` per member name: the same few names (statement, params, rows, …) recur in every event, so
 * their encoding is kept. Bounded, in case some producer puts data in member names.
 */
const memberPrefixes = new Map<string, string>();
const MAX_MEMBER_PREFIXES = 4096;

function memberPrefix(k: string): string {
  let p = memberPrefixes.get(k);
  if (p === undefined) {
    p = directString(k) + ':';
    if (memberPrefixes.size < MAX_MEMBER_PREFIXES) memberPrefixes.set(k, p);
  }
  return p;
}

/**
 * Canonical JSON of a value made of primitives, arrays and plain objects whose own keys iterate in
 * strictly increasing order. Iteration order that passes that check is the sorted order, index-like keys
 * included, so no sorting is needed. Anything else throws NOT_DIRECT.
 */
function direct(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string':
      return directString(v);
    case 'number':
      return Number.isFinite(v) ? '' + v : 'null';
    case 'boolean':
      return v ? 'true' : 'false';
    case 'bigint':
      return '"' + v.toString() + '"';
    case 'object':
      break;
    default:
      throw NOT_DIRECT; // undefined, functions and symbols at the top level: leave to the general path
  }
  if (v === null) return 'null';
  if (depth > MAX_DIRECT_DEPTH) throw NOT_DIRECT;
  if (Array.isArray(v)) {
    if (Object.getPrototypeOf(v) !== Array.prototype || (v as { toJSON?: unknown }).toJSON !== undefined) throw NOT_DIRECT;
    let out = '[';
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (i > 0) out += ',';
      out += x === undefined || typeof x === 'function' || typeof x === 'symbol' ? 'null' : direct(x, depth + 1);
    }
    return out + ']';
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) throw NOT_DIRECT; // Date, Map, class instances, boxed primitives
  const obj = v as Record<string, unknown>;
  if (typeof obj.toJSON === 'function') throw NOT_DIRECT;
  let out = '{';
  let previous: string | undefined;
  // for…in on a plain object visits exactly its own enumerable string keys (Object.prototype has none).
  for (const k in obj) {
    if (previous !== undefined && k <= previous) throw NOT_DIRECT;
    previous = k;
    const x = obj[k];
    if (x === undefined || typeof x === 'function' || typeof x === 'symbol') continue;
    out += (out.length === 1 ? memberPrefix(k) : ',' + memberPrefix(k)) + direct(x, depth + 1);
  }
  return out + '}';
}

/** for…in would also visit enumerable members added to Object.prototype (which JSON.stringify ignores). */
function objectPrototypeClean(): boolean {
  for (const _ in Object.prototype) return false;
  return true;
}

export function canonicalJson(value: unknown): string {
  if (objectPrototypeClean()) {
    try {
      return direct(value, 0);
    } catch (e) {
      if (e !== NOT_DIRECT) throw e;
    }
  }
  try {
    return JSON.stringify(sortedView(value)) ?? 'null';
  } catch (e) {
    if (e instanceof IndexKeys) return slowCanonical(value);
    throw e;
  }
}

/** The reference implementation (always the slow path), for tests. */
export const canonicalJsonReference = slowCanonical;
