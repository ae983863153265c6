import type { TargetConfig } from '../../src/config/schema.ts';

/**
 * How an SSH username picks a target. OpenSSH splits `ssh LOGIN@TARGET@gateway` at the last `@`, so the
 * SSH user arrives as `LOGIN@TARGET`; we split it at its last `@` too (logins may themselves contain `@`).
 * A bare `TARGET` means the target's default login. Anything else (a bare name that is no target) is a
 * jump-host connection: the user only authenticates and then asks for direct-tcpip to a target.
 */
export type Route =
  | { kind: 'target'; target: string; login: string | undefined }
  | { kind: 'jump'; user: string };

export function parseUsername(username: string, isTarget: (name: string) => boolean): Route {
  const at = username.lastIndexOf('@');
  if (at >= 0) {
    const login = username.slice(0, at);
    return { kind: 'target', target: username.slice(at + 1), login: login === '' ? undefined : login };
  }
  if (isTarget(username)) return { kind: 'target', target: username, login: undefined };
  return { kind: 'jump', user: username };
}

/** The login to use on a target: the one asked for, else the target's default login. */
export function resolveLogin(target: TargetConfig, asked: string | undefined): string | undefined {
  if (asked) return asked;
  const def = target.default_login;
  return typeof def === 'string' && def ? def : undefined;
}
