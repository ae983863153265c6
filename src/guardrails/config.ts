import { z } from 'zod';
import { name } from '../config/types.ts';

/**
 * The `guardrails:` section (issue 19 shape). A guardrail applies to a session when one of its `targets`
 * (names or '*') and one of its `roles` ('*' = any) match; it is asked before each statement or command
 * is forwarded.
 */

/** What a SQL guardrail can recognise in a statement (decided on the parser's tree, never on text). */
export const SQL_KINDS = ['drop', 'truncate', 'delete_without_where', 'update_without_where', 'alter_system', 'grant', 'copy_program'] as const;
export type SqlKind = (typeof SQL_KINDS)[number];

export function guardrailsSchema() {
  const sql = z.strictObject({
    /** Statement kinds refused outright. */
    block: z.array(z.enum(SQL_KINDS)).default([]),
    /** Statement kinds refused with a message to request access (no inline approval flow yet). */
    require_approval: z.array(z.enum(SQL_KINDS)).default([]),
    /** Tables (`schema.table` or `table`) no statement may write: INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM, REPLACE, LOAD DATA. */
    block_writes_to: z.array(z.string().min(1)).default([]),
    /** Text the parser cannot parse, or whose effect it cannot know (dynamic SQL): `refuse` (default) or `allow`. */
    on_unparsable: z.enum(['refuse', 'allow']).default('refuse'),
  });
  const ssh = z.strictObject({
    /** Command patterns (words; globs in each word) refused in SSH exec commands. */
    block_commands: z.array(z.string().min(1)).default([]),
    /** Command patterns refused with a message to request access. */
    require_approval_commands: z.array(z.string().min(1)).default([]),
    /** A command line vigil cannot split into words: `refuse` (default) or `allow`. */
    on_unparsable: z.enum(['refuse', 'allow']).default('refuse'),
  });
  const rule = z.strictObject({
    name: name(),
    targets: z.array(z.string()).default(['*']),
    roles: z.array(z.string()).default(['*']),
    sql: sql.optional(),
    ssh: ssh.optional(),
  });
  return z.array(rule).default([]).superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((r, i) => {
      if (seen.has(r.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `guardrails: the name ${r.name} is used twice` });
      seen.add(r.name);
    });
  });
}

export type GuardrailConfig = z.output<ReturnType<typeof guardrailsSchema>>[number];
