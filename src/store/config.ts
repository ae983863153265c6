import { z } from 'zod';
import { secretRef, type SchemaContext, type SecretRef } from '../config/types.ts';

/**
 * `store`: where shared gateway state lives (issued certificates, revocations, access requests, locks,
 * holds). `sqlite` (default) is a file in the data directory: one gateway host. `postgres` lets several
 * gateway replicas share it. The URL carries the password, so it is only ever given by reference.
 */
export const storeSchema = (sc: SchemaContext) =>
  z
    .discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('sqlite') }),
      z.strictObject({
        kind: z.literal('postgres'),
        /** `postgres://user:password@host:5432/db?sslmode=verify-full`, from `{ env }` or `{ file }`. */
        url: secretRef(sc),
        /** Schema holding vigil's tables (created if missing); lets one database serve several installations. */
        schema: z.string().regex(/^[a-z_][a-z0-9_]{0,40}$/, 'a schema name is lower-case letters, digits and _').default('vigil'),
      }),
    ])
    .default({ kind: 'sqlite' });

export type StoreConfig = { kind: 'sqlite' } | { kind: 'postgres'; url: SecretRef; schema: string };
