import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCliCaptured } from '../support/cli.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * `vigil doctor` against a good setup (real sshd and PostgreSQL, CA created, secrets in place) and a
 * broken one (backend down, a port that is not SSH, password variable unset, a listener port taken, loose
 * key permissions, no CA, an invalid key): every problem is a FAIL with a fix, and the exit code says so.
 */

let sshd: SshdHandle;
let pg: PostgresHandle;
const ENV = 'VIGIL_DOCTOR_TEST_PG_PASSWORD';

beforeAll(async () => {
  [sshd, pg] = await Promise.all([startSshd(), startPostgres()]);
});
afterAll(async () => {
  await Promise.all([sshd?.stop(), pg?.stop()]);
  delete process.env[ENV];
});

/** A port nothing listens on (bound once, then released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function setup(targets: unknown[], listenPorts: Record<string, number>) {
  const base = tempDir('vigil-doctor-');
  const doc = {
    data_dir: './data',
    ...Object.fromEntries(Object.entries(listenPorts).map(([k, p]) => [k, { listen: `127.0.0.1:${p}` }])),
    targets,
    roles: [{ name: 'oncall', targets: ['*'], logins: ['*'] }],
  };
  const file = path.join(base, 'vigil.yaml');
  fs.writeFileSync(file, JSON.stringify(doc, null, 2), { mode: 0o600 });
  return { base, file, dataDir: path.join(base, 'data') };
}

const json = (out: string) => JSON.parse(out) as { ok: boolean; checks: { check: string; name: string; ok: boolean; detail: string; fix?: string }[] };

describe('vigil doctor', () => {
  it('a good setup passes every check (exit 0), as text and as JSON', async () => {
    const ports = { ssh: await freePort(), postgres: await freePort(), mysql: await freePort(), api: await freePort() };
    const s = await setup(
      [
        { name: 'web', protocol: 'ssh', host: '127.0.0.1', port: sshd.port, default_login: sshd.user, private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: pg.port, database: 'app', user: 'scram_user', password: { env: ENV } },
      ],
      ports,
    );
    process.env[ENV] = 'secret-value-never-printed';
    expect((await runCliCaptured(['init', '--config', s.file])).code).toBe(0);
    const text = await runCliCaptured(['doctor', '--config', s.file, '--min-free', '1MiB']);
    expect(text.out).not.toMatch(/^FAIL/m);
    expect(text.code).toBe(0);
    for (const area of ['config', 'listener', 'backend', 'secret', 'clock', 'disk', 'permissions', 'ca']) expect(text.out).toMatch(new RegExp(`^OK\\s+${area}\\b`, 'm'));
    expect(text.out).toMatch(/target web \(ssh .*answers: SSH-2\.0-OpenSSH/);
    expect(text.out).toMatch(/target pg \(postgres .*PostgreSQL answers/);
    expect(text.out).toContain(`environment variable ${ENV} is set`);
    expect(text.out).not.toContain('secret-value-never-printed');
    const j = await runCliCaptured(['doctor', '--config', s.file, '--min-free', '1MiB', '--json']);
    expect(j.code).toBe(0);
    expect(json(j.out).ok).toBe(true);
    expect(json(j.out).checks.filter((c) => c.check === 'listener')).toHaveLength(4);
  });

  it('a broken setup fails each problem with what to fix (exit 1)', async () => {
    const down = await freePort();
    const taken = net.createServer(() => {});
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const takenPort = (taken.address() as net.AddressInfo).port;
    try {
      const s = await setup(
        [
          { name: 'web', protocol: 'ssh', host: '127.0.0.1', port: pg.port, default_login: 'x', private_key: sshd.clientKey, host_key: sshd.hostKeyPub },
          { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: down, database: 'app', user: 'scram_user', password: { env: ENV } },
        ],
        { ssh: takenPort, postgres: await freePort(), mysql: await freePort(), api: await freePort() },
      );
      delete process.env[ENV];
      // A CA whose key others can read, in a data dir others can enter.
      expect((await runCliCaptured(['init', '--config', s.file])).code).toBe(0);
      fs.chmodSync(path.join(s.dataDir, 'ca', 'ca.key'), 0o644);
      fs.chmodSync(s.dataDir, 0o755);
      const r = await runCliCaptured(['doctor', '--config', s.file, '--min-free', '1MiB', '--timeout', '2000', '--json']);
      expect(r.code).toBe(1);
      const { ok, checks } = json(r.out);
      expect(ok).toBe(false);
      const failed = (pred: (c: (typeof checks)[number]) => boolean) => {
        const c = checks.find(pred);
        expect(c, JSON.stringify(checks, null, 1)).toBeDefined();
        expect(c!.ok).toBe(false);
        expect(c!.fix).toBeTruthy();
        return c!;
      };
      expect(failed((c) => c.check === 'listener' && c.name.startsWith('ssh ')).detail).toMatch(/in use by another process/);
      expect(failed((c) => c.name.startsWith('target web')).detail).toMatch(/not an SSH server/);
      expect(failed((c) => c.name.startsWith('target pg (')).detail).toMatch(/connection refused/);
      expect(failed((c) => c.name === 'target pg password').fix).toContain(`export ${ENV}=`);
      expect(failed((c) => c.check === 'permissions' && c.name === s.dataDir).fix).toBe(`chmod 700 ${s.dataDir}`);
      expect(failed((c) => c.check === 'permissions' && c.name.startsWith('private keys')).detail).toContain('ca.key (0644)');
      // The text form says FAIL and the fix line for each.
      const text = await runCliCaptured(['doctor', '--config', s.file, '--min-free', '1MiB', '--timeout', '2000']);
      expect(text.code).toBe(1);
      expect(text.out).toMatch(/^FAIL\s+listener\s+ssh 127\.0\.0\.1:\d+: in use by another process\n\s+fix: stop what listens/m);
      expect(text.out).toMatch(/checks failed/);

      // No CA at all; too little disk (asking for more than any disk has).
      fs.rmSync(path.join(s.dataDir, 'ca'), { recursive: true });
      const noCa = json((await runCliCaptured(['doctor', '--config', s.file, '--min-free', '1000000GiB', '--json'])).out);
      expect(noCa.checks.find((c) => c.check === 'ca')).toMatchObject({ ok: false, detail: 'no CA yet' });
      expect(noCa.checks.find((c) => c.check === 'ca')!.fix).toMatch(/vigil init/);
      expect(noCa.checks.find((c) => c.check === 'disk')!.ok).toBe(false);
    } finally {
      taken.close();
    }
  });

  it('an invalid config fails the config check naming the key, and stops there', async () => {
    const s = await setup([{ name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: 'five', database: 'app', user: 'u' }], {});
    const r = await runCliCaptured(['doctor', '--config', s.file, '--json']);
    expect(r.code).toBe(1);
    const { checks } = json(r.out);
    expect(checks).toHaveLength(1);
    expect(checks[0]).toMatchObject({ check: 'config', ok: false });
    expect(checks[0].detail).toMatch(/^targets\[0\]\.port/);
    expect(checks[0].fix).toMatch(/correct targets\[0\]\.port/);
  });
});
