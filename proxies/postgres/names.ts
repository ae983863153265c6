import { tokenize, type Token } from './sql.ts';

/**
 * Names of prepared statements and portals as the server keys them. One namespace per kind, whoever
 * fills it: the protocol (Parse, Bind, Close) and SQL (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD ALL).
 */

/** NAMEDATALEN - 1: the server's hash tables compare names on their first 63 bytes (dynahash HASH_STRINGS). */
const NAME_BYTES = 63;

/**
 * The key the server finds a protocol name under: its first 63 bytes. Longer names that share them are
 * one statement (or portal) to the server, so they must be one to the tracker. The cut may fall inside
 * a character: the key keeps the bytes (latin1), so names differing only there stay apart, as they do
 * on the server.
 */
export function serverName(name: string): string {
  // 21 UTF-16 units are at most 63 UTF-8 bytes: most names never need measuring.
  if (name.length <= 21 || Buffer.byteLength(name) <= NAME_BYTES) return name;
  return Buffer.from(name, 'utf8').subarray(0, NAME_BYTES).toString('latin1');
}

/**
 * An SQL identifier as the scanner makes it (scan.l): quoted ones as written, unquoted ones with ASCII
 * letters folded to lower case (downcase_identifier leaves other characters alone under UTF-8), both
 * clipped to 63 bytes on a character boundary (truncate_identifier).
 */
function identifier(sql: string, t: Token): string | undefined {
  if (t.kind !== 'word' && t.kind !== 'ident') return undefined;
  const name = t.kind === 'ident' ? t.value : sql.slice(t.start, t.end).replace(/[A-Z]+/g, (s) => s.toLowerCase());
  const bytes = Buffer.from(name, 'utf8');
  if (bytes.length <= NAME_BYTES) return name;
  let cut = NAME_BYTES;
  while (cut > 0 && (bytes[cut] & 0xc0) === 0x80) cut--;
  return bytes.subarray(0, cut).toString('utf8');
}

/**
 * What a successful SQL command did to the server's names, from its command tag and its text:
 * `undefined` when it touched none. `name: undefined` means all of that kind (ALL, or a text the lexer
 * cannot read for certain: forgetting every name is safe, a record then says "unknown" rather than
 * naming a statement that is gone).
 */
export type NameChange =
  /** `holdable`: a cursor declared WITH HOLD, which outlives the transaction that commits it. */
  | { kind: 'statement' | 'portal'; op: 'define'; name: string | undefined; holdable?: boolean }
  | { kind: 'statement' | 'portal'; op: 'drop'; name: string | undefined }
  | { kind: 'all'; op: 'drop'; name: undefined };

const CURSOR_OPTIONS = new Set(['binary', 'insensitive', 'asensitive', 'no', 'scroll', 'cursor']);

/** Command tags of the SQL commands that define or drop names: anything else needs no look at its text. */
const NAME_TAGS = new Set(['PREPARE', 'DEALLOCATE', 'DECLARE CURSOR', 'CLOSE CURSOR', 'DEALLOCATE ALL', 'CLOSE CURSOR ALL', 'DISCARD ALL']);

/** Can a statement that completed with `tag` have defined or dropped a name? (Cheap: asked of every statement.) */
export function mayChangeNames(tag: string): boolean {
  return NAME_TAGS.has(tag);
}

export function sqlNameChange(tag: string, sql: string | undefined, scs: boolean): NameChange | undefined {
  switch (tag) {
    case 'PREPARE':
    case 'DEALLOCATE':
    case 'DECLARE CURSOR':
    case 'CLOSE CURSOR':
      break;
    case 'DEALLOCATE ALL':
      return { kind: 'statement', op: 'drop', name: undefined };
    case 'CLOSE CURSOR ALL':
      return { kind: 'portal', op: 'drop', name: undefined };
    case 'DISCARD ALL':
      return { kind: 'all', op: 'drop', name: undefined };
    default:
      return undefined;
  }
  const toks = sql === undefined ? [] : tokenize(sql, scs);
  const word = (i: number) => (toks[i]?.kind === 'word' ? toks[i].value : undefined);
  const nameAt = (i: number) => (toks[i] ? identifier(sql!, toks[i]) : undefined);
  // Only the statement itself: a trailing `;` ends it, anything else means the text is not one command.
  const last = toks.length && toks[toks.length - 1].kind === 'semicolon' ? toks.length - 1 : toks.length;
  switch (tag) {
    case 'PREPARE': {
      // PREPARE name [ ( type, ... ) ] AS statement
      const ok = word(0) === 'prepare' && (word(2) === 'as' || toks[2]?.kind === 'open');
      return { kind: 'statement', op: 'define', name: ok ? nameAt(1) : undefined };
    }
    case 'DEALLOCATE': {
      // DEALLOCATE [ PREPARE ] name
      const at = last === 3 && word(1) === 'prepare' ? 2 : 1;
      const ok = word(0) === 'deallocate' && last === at + 1;
      return { kind: 'statement', op: 'drop', name: ok ? nameAt(at) : undefined };
    }
    case 'DECLARE CURSOR': {
      // DECLARE name [ BINARY ] [ ASENSITIVE | INSENSITIVE ] [ [ NO ] SCROLL ] CURSOR ...
      const ok = word(0) === 'declare' && CURSOR_OPTIONS.has(word(2) ?? '');
      // ... CURSOR [ { WITH | WITHOUT } HOLD ] FOR query: the options come before the first FOR.
      let holdable = false;
      for (let i = 2; i < last && word(i) !== 'for'; i++) if (word(i) === 'with' && word(i + 1) === 'hold') holdable = true;
      return { kind: 'portal', op: 'define', name: ok ? nameAt(1) : undefined, holdable };
    }
    default: {
      // CLOSE name
      const ok = word(0) === 'close' && last === 2;
      return { kind: 'portal', op: 'drop', name: ok ? nameAt(1) : undefined };
    }
  }
}
