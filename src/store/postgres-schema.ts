import type pg from 'pg';

/**
 * Versioned schema of the PostgreSQL state store. Append only: a released migration is never edited, a
 * change is a new version. Text columns hold RFC 3339 times exactly as the SQLite store does, so both
 * order and compare them the same way (byte order, `COLLATE "C"` in queries).
 */
const MIGRATIONS: { version: number; sql: (s: string) => string }[] = [
  {
    version: 1,
    sql: (s) => `
CREATE TABLE ${s}.certs (serial text PRIMARY KEY, "user" text NOT NULL, roles jsonb NOT NULL, not_before text NOT NULL,
  not_after text NOT NULL, grant_id text, kind text NOT NULL);
CREATE TABLE ${s}.revocations (serial text PRIMARY KEY, reason text NOT NULL, "by" text NOT NULL, "time" text NOT NULL);
CREATE TABLE ${s}.access (id text PRIMARY KEY, "user" text NOT NULL, state text NOT NULL, created_at text NOT NULL, data jsonb NOT NULL);
CREATE INDEX access_state ON ${s}.access (state);
CREATE TABLE ${s}.locks (kind text NOT NULL, name text NOT NULL, data jsonb NOT NULL, PRIMARY KEY (kind, name));
CREATE TABLE ${s}.holds (id text PRIMARY KEY, created_at text NOT NULL, data jsonb NOT NULL);

-- Changes other replicas must see at once are announced by the database itself, in the writing
-- transaction (delivered on commit), whoever wrote them: channel <schema>_changes, payload = table.
CREATE FUNCTION ${s}.notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify(TG_TABLE_SCHEMA || '_changes', TG_TABLE_NAME);
  RETURN NULL;
END $$;
CREATE TRIGGER revocations_changed AFTER INSERT OR UPDATE OR DELETE ON ${s}.revocations FOR EACH STATEMENT EXECUTE FUNCTION ${s}.notify_change();
CREATE TRIGGER locks_changed AFTER INSERT OR UPDATE OR DELETE ON ${s}.locks FOR EACH STATEMENT EXECUTE FUNCTION ${s}.notify_change();
CREATE TRIGGER access_added AFTER INSERT OR DELETE ON ${s}.access FOR EACH STATEMENT EXECUTE FUNCTION ${s}.notify_change();
-- Bookkeeping updates (notification progress) do not wake every replica; state changes do.
CREATE TRIGGER access_state_changed AFTER UPDATE ON ${s}.access FOR EACH ROW
  WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION ${s}.notify_change();
`,
  },
  {
    version: 2,
    sql: (s) => `
-- The audit chain of every replica (its own hash-chained log in its data dir) and its signing keys.
-- indexed_seq/indexed_hash: the newest record of that chain in audit_events (always a signed checkpoint).
CREATE TABLE ${s}.audit_chains (replica text PRIMARY KEY, keys jsonb NOT NULL, host text NOT NULL,
  registered_at timestamptz NOT NULL DEFAULT now(), indexed_seq bigint NOT NULL DEFAULT 0, indexed_hash text NOT NULL DEFAULT '',
  indexed_at timestamptz, chain_seq bigint NOT NULL DEFAULT 0, diverged jsonb);
-- Every signed record of every chain, with the exact event bytes its hash covers, so anyone can re-check
-- hashes, links and checkpoint signatures from the database alone.
CREATE TABLE ${s}.audit_events (replica text NOT NULL, seq bigint NOT NULL, prev text NOT NULL, hash text NOT NULL,
  "time" text, type text, "user" text, target text, session text, outcome text, event text NOT NULL, body tsvector,
  PRIMARY KEY (replica, seq));
CREATE INDEX audit_events_time ON ${s}.audit_events ("time" COLLATE "C");
CREATE INDEX audit_events_type ON ${s}.audit_events (type COLLATE "C");
CREATE INDEX audit_events_user ON ${s}.audit_events ("user");
CREATE INDEX audit_events_target ON ${s}.audit_events (target);
CREATE INDEX audit_events_session ON ${s}.audit_events (session);
CREATE INDEX audit_events_body ON ${s}.audit_events USING gin (body);
`,
  },
  {
    version: 3,
    sql: (s) => `
-- One-time approve/deny links (src/access/links.ts): only the token's SHA-256 is kept. A link minted by one
-- replica is used through the balancer on any other; claiming it is one conditional UPDATE (exactly once).
CREATE TABLE ${s}.access_links (hash text PRIMARY KEY, request_id text NOT NULL, decision text NOT NULL,
  created_at text NOT NULL, expires_at bigint NOT NULL, used_at text, used_by text);
CREATE INDEX access_links_request ON ${s}.access_links (request_id);
-- The HMAC key of link tokens, one for every replica (created by the first that needs it). It only lets a
-- replica reject guessed tokens without a lookup: a usable token still needs its random part.
CREATE TABLE ${s}.link_key (id integer PRIMARY KEY CHECK (id = 1), key bytea NOT NULL);
-- The notification outbox of every replica (src/notifiers/outbox.ts). Any replica delivers; the head of
-- a notifier is delivered only by the replica holding its lease (claimed_by/claimed_until, database clock),
-- so each notifier's items go out one at a time, in id order.
CREATE TABLE ${s}.notify_outbox (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, notifier text NOT NULL,
  payload text NOT NULL, created_at text NOT NULL, attempts integer NOT NULL DEFAULT 0, next_at bigint NOT NULL,
  dead boolean NOT NULL DEFAULT false, last_error text, claimed_by text, claimed_until timestamptz);
CREATE INDEX notify_outbox_head ON ${s}.notify_outbox (notifier, id) WHERE NOT dead;
CREATE TABLE ${s}.alert_firings (id text PRIMARY KEY, rule text NOT NULL, "time" text NOT NULL, data text NOT NULL);
CREATE INDEX alert_firings_time ON ${s}.alert_firings ("time" COLLATE "C");
`,
  },
  {
    version: 4,
    sql: (s) => `
-- Which OpenID Provider account each vigil user name belongs to (StateStore.bindIdentity): the (issuer,
-- subject) that first signed in as it. Unique both ways: a name has one account, an account one name.
CREATE TABLE ${s}.identity_bindings ("user" text PRIMARY KEY, issuer text NOT NULL, subject text NOT NULL,
  bound_at text NOT NULL, UNIQUE (issuer, subject));
`,
  },
  {
    version: 5,
    sql: (s) => `
-- The live sessions of every replica (src/sessions/shared-registry.ts), so any replica lists and kills them.
-- A replica renews its lease (database clock) with every publish; sessions of a replica whose lease ran out
-- (it died or lost the database) are not listed, and are swept later. kill_message: a kill asked by
-- another replica, done by the holder (told with NOTIFY on the sessions channel, found again on its next publish).
CREATE TABLE ${s}.live_replicas (replica text PRIMARY KEY, lease_until timestamptz NOT NULL);
CREATE TABLE ${s}.live_sessions (id text PRIMARY KEY, replica text NOT NULL, "user" text NOT NULL,
  started_at text NOT NULL, view jsonb NOT NULL, kill_message text);
CREATE INDEX live_sessions_replica ON ${s}.live_sessions (replica);
`,
  },
  {
    version: 6,
    sql: (s) => `
-- One spelling per person (src/identity/user-name.ts): names that differ only in case are looked up at
-- every issuance and sign-in, without reading every certificate ever issued.
CREATE INDEX certs_user_folded ON ${s}.certs (lower("user"));
CREATE INDEX identity_bindings_user_folded ON ${s}.identity_bindings (lower("user"));
`,
  },
];

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** The NOTIFY channel of a schema (see notify_change above). */
export const changeChannel = (schema: string) => `${schema}_changes`;
/** The NOTIFY channel of kills asked of another replica's live session (payload: the holding replica). */
export const sessionsChannel = (schema: string) => `${schema}_sessions`;

/**
 * Bring the schema up to date. One transaction under an advisory lock: replicas starting together queue
 * here, and the second finds the versions the first applied. A failed migration leaves nothing behind.
 * Returns the versions applied now and the newest version found in the database.
 */
export async function migrate(client: pg.ClientBase, schema: string): Promise<{ applied: number[]; current: number }> {
  const s = `"${schema}"`;
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`vigil.migrate.${schema}`]);
    // CREATE SCHEMA IF NOT EXISTS needs the right to create schemas in the database even when the schema
    // is there: a least-privilege role that only owns a schema a DBA made for it could never start.
    const found = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    if (!found.rowCount) await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set((await client.query<{ version: number }>(`SELECT version FROM ${s}.schema_migrations`)).rows.map((r) => r.version));
    const applied: number[] = [];
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await client.query(m.sql(s));
      await client.query(`INSERT INTO ${s}.schema_migrations (version) VALUES ($1)`, [m.version]);
      applied.push(m.version);
    }
    await client.query('COMMIT');
    return { applied, current: Math.max(0, ...done, ...applied) };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => {});
    throw e;
  }
}
