import { z } from 'zod';
import type { ProxyModule, ListenerSection } from '../../src/gateway/proxy.ts';
import { listenerBase, secretRef } from '../../src/config/types.ts';

// PLACEHOLDER module shape; the Postgres proxy implementation replaces `create`.
export const postgresProxy: ProxyModule<ListenerSection> = {
  name: 'postgres',
  sectionSchema: () => z.strictObject({ ...listenerBase('0.0.0.0:6432') }),
  targetFields: (sc) => ({
    database: z.string().default('postgres'),
    user: z.string(),
    password: secretRef(sc).optional(),
  }),
  create: () => {
    throw new Error('postgres proxy not implemented yet');
  },
};
