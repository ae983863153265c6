import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../app/main.ts';
import { publicKeyLine } from '../../proxies/ssh/known-hosts.ts';
import { openIdentity, initIdentity } from '../../src/identity/index.ts';
import { loadConfig } from '../../app/config.ts';
import { openStateStore } from '../../src/store/index.ts';
import { tempDir } from '../support/tmp.ts';

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough();
  const err = new PassThrough();
  let o = '';
  let e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const code = await runCli(argv, out, err);
  return { code, out: o, err: e };
}

describe('vigil ssh known-hosts', () => {
  const dir = tempDir('vigil-ssh-cli-');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('prints the gateway line and one line per SSH target, with the keys vigil presents', async () => {
    fs.writeFileSync(path.join(dir, 'key'), '');
    const config = path.join(dir, 'vigil.yaml');
    fs.writeFileSync(
      config,
      [
        'data_dir: ./data',
        'ssh: { listen: "0.0.0.0:2222" }',
        'targets:',
        '  - { name: web-1, protocol: ssh, host: 10.0.0.11, port: 22, private_key: key, host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPYpXOByvlYyZsV8VbTRKxU9rO6dnNVRWVw7dL6JnWPs" }',
        '  - { name: db-1, protocol: ssh, host: 10.0.0.12, port: 2200, private_key: key, known_hosts: key }',
      ].join('\n') + '\n',
    );
    const r = await cli(['ssh', 'known-hosts', '--config', config, '--host', 'gw.example.com']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines.map((l) => l.split(' ')[0])).toEqual(['[gw.example.com]:2222', 'web-1', 'db-1']);
    // The keys are the ones the identity service hands to the SSH listener and the jump-host servers.
    const loaded = loadConfig({ configPath: config });
    await initIdentity(loaded.dataDir, loaded.config, { updateDerived: false });
    const store = await openStateStore(loaded.dataDir);
    try {
      const identity = await openIdentity(loaded.dataDir, loaded.config, store);
      expect(lines[0]).toBe(`[gw.example.com]:2222 ${publicKeyLine(identity.sshHostKey())}`);
      expect(lines[2]).toBe(`db-1 ${publicKeyLine(identity.sshTargetHostKey('db-1').privateKey)}`);
    } finally {
      await store.close();
    }
    expect((await cli(['ssh', 'known-hosts', '--config', config])).code).toBe(2);
  });
});
