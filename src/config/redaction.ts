/**
 * Secret-name patterns from `redaction.patterns`, shared by every proxy that masks parameters and
 * columns: compiled once into one case-insensitive alternation. Validated at config load (schema.ts), so
 * a bad pattern is a config error naming its key rather than a proxy failing at start.
 */
export function compileSecretPattern(patterns: readonly string[]): RegExp | undefined {
  return patterns.length ? new RegExp(patterns.map((p) => `(?:${p})`).join('|'), 'i') : undefined;
}

/** Whether `p` compiles as a regular expression (for config validation). */
export function isValidPattern(p: string): boolean {
  try {
    new RegExp(p, 'i');
    return true;
  } catch {
    return false;
  }
}
