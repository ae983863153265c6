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
