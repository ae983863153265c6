/**
 * Canonical JSON: object keys sorted by UTF-16 code units (as in RFC 8785), no whitespace, `undefined`
 * members dropped, non-finite numbers as null, bigint as a decimal string. The hash chain is computed
 * over this encoding, so any independent verifier can recompute a record's hash from the parsed event.
 *
 * Fast path: build a key-sorted view of the value (reusing already-sorted objects) and let the native
 * JSON.stringify do the encoding. Objects with array-index-like keys ("0", "12") are the exception —
 * JSON.stringify always emits those first in numeric order — so such values take the slow path.
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

export function canonicalJson(value: unknown): string {
  try {
    return JSON.stringify(sortedView(value)) ?? 'null';
  } catch (e) {
    if (e instanceof IndexKeys) return slowCanonical(value);
    throw e;
  }
}

/** The reference implementation (always the slow path), for tests. */
export const canonicalJsonReference = slowCanonical;
