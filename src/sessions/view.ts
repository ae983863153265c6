import type { LiveSession } from './registry.ts';

/** The JSON view of a live session, as the API lists it (GET /v1/sessions) and watch announces it. */
export function sessionView(s: LiveSession) {
  return {
    id: s.id,
    protocol: s.protocol,
    user: s.principal.user,
    roles: s.principal.roles,
    cert_serial: s.principal.certSerial,
    target: s.target,
    source: s.source,
    grant_ids: s.grantIds,
    access_expires_at: s.accessExpiresAt?.toISOString(),
    started_at: s.startedAt.toISOString(),
    bytes_from_client: s.stats?.bytesFromClient ?? 0,
    bytes_to_client: s.stats?.bytesToClient ?? 0,
    statements: s.stats?.statements ?? 0,
    // gateway.workers > 1: the process that holds the session (GET /v1/sessions fetched its counts above from it).
    ...(s.worker ? { worker_pid: s.worker.pid } : {}),
  };
}
