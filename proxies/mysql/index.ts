import { z } from 'zod';
import type { ProxyModule, ListenerSection } from '../../src/gateway/proxy.ts';
import { listenerBase, secretRef } from '../../src/config/types.ts';

// PLACEHOLDER module shape; the MySQL proxy implementation replaces `create`.
export const mysqlProxy: ProxyModule<ListenerSection> = {
  name: 'mysql',
  sectionSchema: () => z.strictObject({ ...listenerBase('0.0.0.0:3307') }),
  targetFields: (sc) => ({
    database: z.string().optional(),
    user: z.string(),
    password: secretRef(sc).optional(),
  }),
  create: () => {
    throw new Error('mysql proxy not implemented yet');
  },
};
