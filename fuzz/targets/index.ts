/** Every fuzz target, by name (the file fuzz/targets/<name>.ts exports `target`). */
export const TARGETS: Record<string, string> = {
  'pg-framing': 'Postgres message framer (typed and startup), split-invariance',
};
