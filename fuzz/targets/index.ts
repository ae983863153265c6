/** Every fuzz target, by name (the file fuzz/targets/<name>.ts exports `target`), with what it covers. */
export const TARGETS: Record<string, string> = {
  'pg-framing': 'Postgres message framer (typed and startup phases), split-invariance',
  'pg-frontend': 'Postgres frontend message decoders (startup, Query, Parse, Bind, Execute, …), round-trip',
  'pg-backend': 'Postgres backend messages: command tags, error fields, pg-protocol decoding',
  'pg-tracker': 'Postgres relayed session: framing of both directions into the query tracker',
  'pg-sql': 'Postgres SQL lexer, splitter, redaction and client-encoding text decoding',
};
