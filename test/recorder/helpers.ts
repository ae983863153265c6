import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { createEvent, type AuditEvent } from '../../src/events/envelope.ts';
import { silentLogger } from '../../src/log.ts';
import type { AuditOpenOptions } from '../../recorder/audit/index.ts';

/** An Ed25519 pair in `dir` laid out as identity creates it (PKCS#8 private, SPKI public). */
export function makeSigningKey(dir: string): { keyFile: string; pubFile: string; publicPem: string } {
  fs.mkdirSync(dir, { recursive: true });
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const keyFile = path.join(dir, 'audit_signing.key');
  const pubFile = path.join(dir, 'audit_signing.pub');
  fs.writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const publicPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  fs.writeFileSync(pubFile, publicPem);
  return { keyFile, pubFile, publicPem };
}

export function auditOptions(keyFile: string, over: Partial<AuditOpenOptions> = {}): AuditOpenOptions {
  return { signingKeyFile: keyFile, segmentMaxBytes: 64 * 1024 * 1024, checkpointIntervalMs: 1000, checkpointEvery: 1000, log: silentLogger(), ...over };
}

/** A realistic event, as the proxies emit them. */
export function sampleEvent(i: number, over: Partial<Parameters<typeof createEvent>[0]> = {}): AuditEvent {
  return createEvent({
    type: 'db.query',
    outcome: 'success',
    actor: { user: i % 2 ? 'alice' : 'bob', roles: ['dba'], cert_serial: `serial-${i % 7}` },
    source: { ip: '10.0.0.7', port: 50000 + (i % 1000) },
    target: { name: i % 3 ? 'orders-db' : 'billing-db', protocol: 'postgres', host: '10.1.2.3', database: 'orders' },
    session_id: `sess-${Math.floor(i / 100)}`,
    details: { statement: `SELECT * FROM orders WHERE id = $1 /* ${i} */`, params: [String(i)], rows: i % 50, duration_ms: 1.25 },
    ...over,
  });
}
