import type { AuditEvent } from '../events/envelope.ts';

/** Types of what a config reload did (`vigil config reload`, `POST /v1/config/reload`, SIGHUP's log line). */

export interface NamedChanges {
  added: string[];
  removed: string[];
  changed: string[];
}

export interface ReloadReport {
  ok: boolean;
  file?: string;
  /** Failure only: the key path that is wrong (`targets[1].port`) and what is wrong with it. */
  error?: { code: string; key: string; message: string };
  /** SHA-256 of the effective config before and after (secrets are references, never values, in a config). */
  digest?: { old: string; new: string };
  targets?: NamedChanges;
  roles?: NamedChanges;
  alerts?: NamedChanges;
  /** Top-level sections whose values changed and were applied. */
  applied?: string[];
  /** Changed settings kept at their old value until a restart (`ssh.listen`, `audit`, …), with why. */
  restart_required?: { key: string; why: string }[];
  /** Live sessions cut because their role or target no longer allows them. */
  sessions_cut?: { id: string; user: string; target: string; protocol: string; reason: string }[];
}

export interface ReloadTrigger {
  /** `signal` (SIGHUP), `api` or `test`. */
  via: string;
  actor?: AuditEvent['actor'];
  source?: AuditEvent['source'];
}
