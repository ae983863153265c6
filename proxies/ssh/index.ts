import type { ProxyModule } from '../../src/gateway/proxy.ts';
import { sshSectionSchema, sshTargetFields, type SshSection } from './config.ts';

/**
 * The SSH proxy: terminates SSH with an ssh2 server on the gateway's listener socket, authenticates vigil
 * user certificates, and relays to targets (username routing `LOGIN@TARGET` or jump-host mode), recording
 * every channel. The gateway owns the TCP listener; each accepted socket is injected here.
 *
 * Only the config schema is loaded with this module: the config loader (and so every CLI command) needs it,
 * the listener (ssh2, the terminal emulator, sftp and scp parsers) only `vigil serve` does.
 */
export const sshProxy: ProxyModule<SshSection> = {
  name: 'ssh',
  sectionSchema: () => sshSectionSchema(),
  targetFields: (sc) => sshTargetFields(sc),
  async create(services, section) {
    const { createSshListener } = await import('./listener.ts');
    return createSshListener(services, section);
  },
};
