import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import { parseConfig } from '../../app/config.ts';
import { SSH_CIPHERS } from '../../proxies/ssh/config.ts';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/** The cipher the stock client negotiated, from its `-v` output. */
function clientCipher(stderr: string): string | undefined {
  return /kex: server->client cipher: (\S+)/.exec(stderr)?.[1];
}

describe('ssh.ciphers', () => {
  it('names the key on a cipher vigil does not offer, and on an empty list', () => {
    for (const ciphers of [['aes128-cbc'], []]) {
      let err: { code?: string; path?: string; message?: string } = {};
      try {
        parseConfig({ ssh: { ciphers } }, '/tmp');
      } catch (e) {
        err = e as typeof err;
      }
      expect(err.code).toBe('VIGIL_CONFIG_INVALID');
      expect(err.path).toMatch(/^ssh\.ciphers/);
      expect(err.message).toMatch(/^ssh\.ciphers/);
    }
  });

  it('offers only ciphers ssh2 implements (the list is kept here so the config does not load ssh2)', () => {
    const { SUPPORTED_CIPHER } = createRequire(import.meta.url)('ssh2/lib/protocol/constants.js') as { SUPPORTED_CIPHER: string[] };
    for (const c of SSH_CIPHERS) expect(SUPPORTED_CIPHER).toContain(c);
  });

  describe('with the default (every cipher offered) and with aes128-gcm only', () => {
    let all: SshWorld;
    let gcm: SshWorld;
    let alice: IssuedFiles;
    let alice2: IssuedFiles;
    beforeAll(async () => {
      all = await startWorld();
      gcm = await startWorld({ config: { ssh: { listen: '127.0.0.1:0', ciphers: ['aes128-gcm@openssh.com'] } } });
      alice = await all.issue();
      alice2 = await gcm.issue();
    }, 30_000);
    afterAll(async () => {
      await all?.stop();
      await gcm?.stop();
    });

    it('the stock client keeps its own first choice by default; session.end names both legs', async () => {
      const r = await all.run('ssh', [...all.opts(alice, ['-o', 'LogLevel=DEBUG1']), `${all.sshd.user}@web1@127.0.0.1`, 'true']);
      expect(r.code).toBe(0);
      expect(clientCipher(r.stderr)).toBe('chacha20-poly1305@openssh.com');
      const end = await all.gw.waitForEvent((e) => e.type === 'session.end');
      // vigil is the client of the target: its own preference decides that leg (AEAD either way).
      expect(end.details.cipher).toEqual({ client: 'chacha20-poly1305@openssh.com', target: expect.stringMatching(/^(aes128-gcm@openssh\.com|chacha20-poly1305@openssh\.com)$/) });
    });

    it('a configured list steers the stock client to it, and a client that has none of it is refused', async () => {
      const r = await gcm.run('ssh', [...gcm.opts(alice2, ['-o', 'LogLevel=DEBUG1']), `${gcm.sshd.user}@web1@127.0.0.1`, 'true']);
      expect(r.code).toBe(0);
      expect(clientCipher(r.stderr)).toBe('aes128-gcm@openssh.com');
      const end = await gcm.gw.waitForEvent((e) => e.type === 'session.end');
      expect((end.details.cipher as { client: string }).client).toBe('aes128-gcm@openssh.com');

      const refused = await gcm.run('ssh', [...gcm.opts(alice2, ['-c', 'chacha20-poly1305@openssh.com']), `${gcm.sshd.user}@web1@127.0.0.1`, 'true']);
      expect(refused.code).toBe(255);
      expect(refused.stderr).toMatch(/no matching cipher found/);
    });
  });
});
