import type { StateStore } from '../store/types.ts';

/**
 * What a vigil user name may be, in one place: every credential names one (certificate principal and
 * CN, token subject), and whatever names a user for someone else (an access request filed for them, a
 * lock) is held to the same rule, so it names somebody who can exist.
 */
export const USER_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$/;

export const USER_NAME_RULE = '1-64 letters, digits or . _ @ + - (starting with a letter or digit)';

export function isUserName(name: string): boolean {
  return USER_NAME_RE.test(name);
}

/**
 * The person a name stands for: `Alice` and `alice` read as the same person to whoever approves, locks
 * or audits, so they must never be two users. Names are ASCII (USER_NAME_RE), so this is case folding;
 * NFKC keeps it right for any text compared with a name (a request record written before the rule).
 */
export function foldUserName(name: string): string {
  return name.normalize('NFKC').toLowerCase();
}

/**
 * Spellings of `name` (same person by foldUserName) that vigil already knows, `name` itself included
 * when known: users it ever issued a credential to (certificates, tokens, SSO sign-ins) and names
 * locked in advance. One spelling per person is decided here, at issuance and sign-in: the first one
 * known keeps the name, so existing users keep working as they are, and a second spelling is refused
 * before it can hold credentials that locks, grants and limits keyed by the first would not reach.
 */
export async function knownSpellings(store: StateStore, name: string): Promise<string[]> {
  // Names are ASCII (USER_NAME_RE): the store's lower() folds them as foldUserName does, through an index.
  if (!isUserName(name)) return [];
  return store.userSpellings(name);
}

/**
 * Why `name` may not be a user's name although it is well formed: it differs only in case from a user
 * vigil knows. Undefined when `name` is that user's own spelling (or nobody has a spelling of it yet).
 */
export async function spellingConflict(store: StateStore, name: string): Promise<string | undefined> {
  const known = await knownSpellings(store, name);
  if (known.length === 0 || known.includes(name)) return undefined;
  return `user ${JSON.stringify(name)} differs only in case from existing user ${known.map((n) => JSON.stringify(n)).join(', ')}; one person has one spelling: use it`;
}
