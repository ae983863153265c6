import { z } from 'zod';
import type { ProxyModule, ListenerSection } from '../../src/gateway/proxy.ts';
import { listenerBase, filePath, secretRef } from '../../src/config/types.ts';

// PLACEHOLDER module shape; the SSH proxy implementation replaces `create`.
export const sshProxy: ProxyModule<ListenerSection> = {
  name: 'ssh',
  sectionSchema: () => z.strictObject({ ...listenerBase('0.0.0.0:2222') }),
  targetFields: (sc) => ({
    logins: z.array(z.string()).default([]),
    default_login: z.string().optional(),
    private_key: filePath(sc).optional(),
    password: secretRef(sc).optional(),
    host_key: z.string().optional(),
    known_hosts: filePath(sc).optional(),
    port_forwarding: z.boolean().default(false),
  }),
  create: () => {
    throw new Error('ssh proxy not implemented yet');
  },
};
