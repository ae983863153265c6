import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { parseConfig } from '../../app/config.ts';
import { parseDuration, parseListen } from '../../src/config/units.ts';
import { bastionCompose, bastionVigilConfig, COMPOSE_DIR, HAPROXY_CFG, haproxyCfgVariables, LISTENER_PORT_VARS, REPO, type ListenerName } from '../support/bastion.ts';
import { startTestGateway } from '../support/gateway.ts';
import { clientEnv, startPostgres, type PostgresHandle } from '../support/postgres.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The deployment examples in deploy/, checked as far as a machine without Docker or Kubernetes allows:
 * every vigil config in them is accepted by the real config parser, haproxy.cfg by `haproxy -c`, and the
 * files agree with each other and with the Dockerfile (ports, addresses, probes, users, volumes, grace
 * periods). The Kubernetes sidecar's config and init script also run, against a real PostgreSQL.
 * The compose topology itself runs in test/core/haproxy-replicas.test.ts.
 */

const DOCKERFILE = fs.readFileSync(path.join(REPO, 'Dockerfile'), 'utf8');
const imageEnv = (name: string) => new RegExp(`\\b${name}=(\\S+)`).exec(DOCKERFILE)?.[1];
const imageUid = Number(/useradd[^\n]*--uid (\d+)/.exec(DOCKERFILE)?.[1]);
const seconds = (text: string | number) => parseDuration(String(text))! / 1000;
const LISTENERS = Object.keys(LISTENER_PORT_VARS) as ListenerName[];

/** `environment:` of a compose service, as a map (compose also allows a list of NAME=value). */
function envOf(service: { environment?: Record<string, unknown> | string[] }): Record<string, string> {
  const e = service.environment ?? {};
  if (Array.isArray(e)) return Object.fromEntries(e.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, String(v)]));
}

/** `source:target[:ro]` volume entries of a compose service, as target → source. */
const mountsOf = (service: { volumes?: string[] }) => new Map((service.volumes ?? []).map((v) => [v.split(':')[1], v.split(':')[0]]));

describe('deploy/compose: three vigil replicas, a PostgreSQL store and HAProxy', () => {
  const compose = bastionCompose();
  const vigilDoc = bastionVigilConfig();
  const config = parseConfig(vigilDoc, COMPOSE_DIR, false);
  const lb = compose.services.haproxy;
  const lbEnv = envOf(lb);
  const replicaNames = Object.keys(compose.services).filter((n) => /^vigil-\d+$/.test(n));

  it('vigil.yaml is accepted by the config parser: postgres store, strict durability, PROXY protocol on every listener', () => {
    expect(config.store.kind).toBe('postgres');
    expect(config.audit.durability).toBe('strict');
    for (const l of LISTENERS) expect(vigilDoc[l].proxy_protocol?.trusted, l).toEqual([expect.any(String)]);
    expect(config.gateway.drain_notice).toBeGreaterThan(0);
  });

  it('haproxy.cfg passes `haproxy -c` with the environment compose gives it, and reads no other variable', async () => {
    const vars = haproxyCfgVariables();
    expect(vars.length).toBeGreaterThan(0);
    expect(Object.keys(lbEnv).sort()).toEqual([...vars].sort());
    const r = await new Promise<{ code: number; out: string }>((resolve) =>
      execFile('haproxy', ['-c', '-f', HAPROXY_CFG], { env: { PATH: process.env.PATH, ...lbEnv } }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr })),
    );
    expect(r.code, r.out).toBe(0);
    // The replicas' names only resolve inside the compose network: the one warning expected here.
    const warnings = r.out.split('\n').filter((l) => l.includes('[WARNING]'));
    for (const w of warnings) expect(w).toMatch(/could not resolve address 'vigil-\d'/);
    // Without the environment the file is refused, so the check above did read it.
    const bare = await new Promise<number>((resolve) => execFile('haproxy', ['-c', '-f', HAPROXY_CFG], { env: { PATH: process.env.PATH } }, (err) => resolve(err ? 1 : 0)));
    expect(bare).toBe(1);
  });

  it('HAProxy and the replicas agree: ports, the one trusted balancer address, the replicas it balances, a drain longer than the checks take', () => {
    for (const l of LISTENERS) {
      const port = parseListen(vigilDoc[l].listen)!.port;
      expect(lbEnv[LISTENER_PORT_VARS[l]], l).toBe(String(port));
      expect(lb.ports, l).toContain(`${port}:${port}`);
      expect(vigilDoc[l].proxy_protocol.trusted, l).toEqual([lbEnv.VIGIL_LB_SOURCE]);
    }
    expect(lb.networks.bastion.ipv4_address).toBe(lbEnv.VIGIL_LB_SOURCE);
    const [net, bits] = compose.networks.bastion.ipam.config[0].subnet.split('/');
    expect(Number(bits)).toBe(24);
    expect(lbEnv.VIGIL_LB_SOURCE.split('.').slice(0, 3)).toEqual(net.split('.').slice(0, 3));
    expect(replicaNames).toEqual(['vigil-1', 'vigil-2', 'vigil-3']);
    expect([lbEnv.VIGIL_REPLICA_1, lbEnv.VIGIL_REPLICA_2, lbEnv.VIGIL_REPLICA_3]).toEqual(replicaNames);
    // HAProxy takes a draining replica out (fall × inter) well before vigil closes its listeners.
    const cfg = fs.readFileSync(HAPROXY_CFG, 'utf8');
    expect(cfg).toMatch(/option httpchk GET \/readyz/);
    const m = /default-server .*\binter (\d+)s fall (\d+)/.exec(cfg)!;
    expect(Number(m[1]) * Number(m[2]) * 1000).toBeLessThan(config.gateway.drain_notice);
    expect(cfg).toMatch(/default-server .*send-proxy-v2/);
  });

  it('every replica: the config where the image looks, its own data volume, the shared CA, the secrets it names, the store URL, a grace period past the drain', () => {
    const configPath = imageEnv('VIGIL_CONFIG')!;
    expect(configPath).toBe('/etc/vigil/vigil.yaml');
    const dataVolumes = new Set<string>();
    const secretsNamed = [...JSON.stringify(vigilDoc).matchAll(/"\/run\/secrets\/([^"]+)"/g)].map((m) => m[1]);
    expect(secretsNamed.length).toBeGreaterThan(0);
    for (const name of replicaNames) {
      const s = compose.services[name];
      const mounts = mountsOf(s);
      expect(mounts.get(configPath), name).toBe('./vigil.yaml');
      const data = mounts.get(vigilDoc.data_dir);
      expect(data, name).toMatch(/^vigil-\d-data$/);
      dataVolumes.add(data!);
      expect(mounts.get(`${vigilDoc.data_dir}/ca`), name).toBe('vigil-ca');
      for (const secret of secretsNamed) expect(s.secrets, name).toContain(secret);
      const url = new URL(envOf(s)[vigilDoc.store.url.env].replace(/\$\{[^}]+\}/, 'PASSWORD'));
      expect(url.hostname).toBe('store');
      expect(url.username).toBe(envOf(compose.services.store).POSTGRES_USER);
      expect(url.pathname).toBe(`/${envOf(compose.services.store).POSTGRES_DB}`);
      expect(seconds(s.stop_grace_period)).toBeGreaterThan((config.gateway.drain_notice + config.gateway.shutdown_drain) / 1000);
      expect(s.depends_on['vigil-init'].condition).toBe('service_completed_successfully');
    }
    expect(dataVolumes.size).toBe(replicaNames.length);
    for (const secret of secretsNamed) expect(compose.secrets[secret], secret).toBeDefined();
    // vigil-init fills the shared CA volume with the replicas' own config (and the files it names).
    const init = compose.services['vigil-init'];
    expect(mountsOf(init).get('/ca')).toBe('vigil-ca');
    expect(mountsOf(init).get(configPath)).toBe('./vigil.yaml');
    expect(init.command.join('\n')).toMatch(new RegExp(`vigil\\.js init --config ${configPath}`));
    for (const secret of secretsNamed) expect(init.secrets).toContain(secret);
    // The image runs as a fixed non-root uid; vigil-init hands it the CA volume.
    expect(imageUid).toBeGreaterThan(0);
    expect(DOCKERFILE).toMatch(new RegExp(`^USER ${imageUid}(:\\d+)?$`, 'm'));
    expect(init.command.join('\n')).toMatch(/chown -R vigil:vigil \/ca/);
  });
});

describe('deploy/kubernetes: vigil as a sidecar of PostgreSQL, config from a Secret', () => {
  const docs = YAML.parseAllDocuments(fs.readFileSync(path.join(REPO, 'deploy/kubernetes/postgres-with-vigil.yaml'), 'utf8')).map((d) => d.toJS());
  const secret = docs.find((d) => d.kind === 'Secret');
  const sts = docs.find((d) => d.kind === 'StatefulSet');
  const service = docs.find((d) => d.kind === 'Service');
  const initMap = docs.find((d) => d.kind === 'ConfigMap');
  const pod = sts.spec.template.spec;
  const vigil = pod.containers.find((c: { name: string }) => c.name === 'vigil');
  const db = pod.containers.find((c: { name: string }) => c.name === 'postgres');
  const configPath = vigil.args[vigil.args.indexOf('--config') + 1] as string;
  const configMount = vigil.volumeMounts.find((m: { mountPath: string }) => configPath.startsWith(`${m.mountPath}/`));
  const configVolume = pod.volumes.find((v: { name: string }) => v.name === configMount.name);
  /** Path inside the container → Secret key, for the files of the mounted Secret. */
  const secretFiles = new Map<string, string>(configVolume.secret.items.map((i: { key: string; path: string }) => [`${configMount.mountPath}/${i.path}`, i.key]));
  const vigilDoc = YAML.parse(secret.stringData[secretFiles.get(configPath)!]);
  const config = parseConfig(vigilDoc, '/', false);
  const port = (name: string) => vigil.ports.find((p: { name: string }) => p.name === name).containerPort as number;

  it("the Secret's vigil.yaml is accepted by the config parser; every file it names comes from the same Secret", () => {
    expect(configVolume.secret.secretName).toBe(secret.metadata.name);
    expect(configMount.readOnly).toBe(true);
    const files = [...JSON.stringify(vigilDoc).matchAll(/"file":"([^"]+)"/g)].map((m) => m[1]);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) expect(secret.stringData[secretFiles.get(f)!], f).toEqual(expect.any(String));
    // Its data dir is the sidecar's own volume.
    const dataMount = vigil.volumeMounts.find((m: { mountPath: string }) => m.mountPath === vigilDoc.data_dir);
    expect(sts.spec.volumeClaimTemplates.map((t: { metadata: { name: string } }) => t.metadata.name)).toContain(dataMount.name);
  });

  it('the sidecar fronts its own pod: listens where the Service and the probes point, the database only on loopback', () => {
    expect(parseListen(vigilDoc.postgres.listen)!.port).toBe(port('postgres'));
    expect(parseListen(vigilDoc.api.listen)!.port).toBe(port('vigil-api'));
    expect(service.spec.selector).toEqual(sts.spec.template.metadata.labels);
    expect(service.spec.ports.map((p: { targetPort: string }) => p.targetPort).sort()).toEqual(['postgres', 'vigil-api']);
    const [target] = config.targets;
    expect(target.host).toBe('127.0.0.1');
    expect(db.args.join(' ')).toContain('listen_addresses=127.0.0.1');
    expect(target.port).toBe(5432);
    expect(vigilDoc.gateway.tls_sans).toContain(service.metadata.name);
    // Readiness: /readyz (503 while draining); liveness: /healthz; HTTPS on the API port, no client certificate.
    expect(vigil.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'vigil-api', scheme: 'HTTPS' });
    expect(vigil.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'vigil-api', scheme: 'HTTPS' });
    // The readiness probe notices the drain well within it; the pod's grace period outlasts drain + shutdown.
    expect(vigil.readinessProbe.periodSeconds * vigil.readinessProbe.failureThreshold * 1000).toBeLessThan(config.gateway.drain_notice);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(config.gateway.drain_notice + config.gateway.shutdown_drain);
  });

  it("runs as the image's non-root user with a read-only root filesystem and a writable data volume", () => {
    const sc = vigil.securityContext;
    expect(sc.runAsNonRoot).toBe(true);
    expect(sc.runAsUser).toBe(imageUid);
    expect(sc.allowPrivilegeEscalation).toBe(false);
    expect(sc.readOnlyRootFilesystem).toBe(true);
    expect(sc.capabilities.drop).toEqual(['ALL']);
    expect(pod.securityContext.fsGroup).toBe(Number(new RegExp(`groupadd[^\\n]*--gid (\\d+)`).exec(DOCKERFILE)![1]));
    expect(vigil.volumeMounts.map((m: { mountPath: string }) => m.mountPath)).toContain('/tmp');
  });

  describe('running it: the init script against a real PostgreSQL, vigil from the Secret, the probes and a psql session', () => {
    let pg: PostgresHandle | undefined;
    const base = tempDir('vigil-k8s-');
    afterAll(async () => {
      await pg?.stop();
      fs.rmSync(base, { recursive: true, force: true });
    });

    it('works', async () => {
      pg = await startPostgres();
      const dbEnv = Object.fromEntries(db.env.filter((e: { value?: string }) => e.value !== undefined).map((e: { name: string; value: string }) => [e.name, e.value]));
      pg.psql(`CREATE DATABASE ${dbEnv.POSTGRES_DB}`, 'postgres'); // what the image does with POSTGRES_DB
      const proxyPassword = secret.stringData[db.env.find((e: { name: string }) => e.name === 'VIGIL_PROXY_PASSWORD').valueFrom.secretKeyRef.key];
      // The ConfigMap's init script, as the postgres image runs it (here over TCP to the test server).
      const script = path.join(base, 'init.sh');
      fs.writeFileSync(script, initMap.data['10-vigil-proxy.sh'], { mode: 0o755 });
      const init = await new Promise<{ code: number | null; err: string }>((resolve) => {
        const c = spawn('sh', [script], { env: clientEnv({ PGHOST: '127.0.0.1', PGPORT: String(pg!.port), PGSSLMODE: 'disable', POSTGRES_USER: dbEnv.POSTGRES_USER, POSTGRES_DB: dbEnv.POSTGRES_DB, VIGIL_PROXY_PASSWORD: proxyPassword }), stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        c.stderr.on('data', (d) => (err += d));
        c.on('close', (code) => resolve({ code, err }));
      });
      expect(init.code, init.err).toBe(0);

      // The Secret as the kubelet mounts it, and its config with the container's paths moved under `base`.
      const mount = path.join(base, 'etc-vigil');
      fs.mkdirSync(mount, { recursive: true });
      for (const [file, key] of secretFiles) fs.writeFileSync(path.join(mount, path.basename(file)), secret.stringData[key], { mode: 0o440 });
      const text = fs.readFileSync(path.join(mount, path.basename(configPath)), 'utf8').replaceAll(`${configMount.mountPath}/`, `${mount}/`);
      const doc = YAML.parse(text);
      doc.data_dir = path.join(base, 'data');
      doc.postgres.listen = '127.0.0.1:0';
      doc.api.listen = '127.0.0.1:0';
      doc.targets[0].port = pg.port; // the pod's loopback:5432 is the test server here
      const tg = await startTestGateway(doc, base);
      try {
        // The kubelet's HTTPS probes: no client certificate, no certificate verification.
        const probe = (p: string) =>
          new Promise<number>((resolve, reject) => https.get({ host: '127.0.0.1', port: tg.ports.api, path: p, rejectUnauthorized: false, agent: false }, (res) => (res.resume(), resolve(res.statusCode!))).on('error', reject));
        expect(await probe(vigil.readinessProbe.httpGet.path)).toBe(200);
        expect(await probe(vigil.livenessProbe.httpGet.path)).toBe(200);
        expect(await probe(vigil.startupProbe.httpGet.path)).toBe(200);

        const alice = await tg.issue({ user: 'alice', roles: ['dba'] });
        const target = config.targets[0].name;
        const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
          const conn = `host=localhost hostaddr=127.0.0.1 port=${tg.ports.postgres} dbname=${target} user=alice sslmode=verify-full sslrootcert=${alice.ca} sslcert=${alice.crt} sslkey=${alice.key}`;
          const c = spawn('psql', ['-X', '-qAt', '-d', conn, '-c', 'SELECT current_user, current_database()'], { env: clientEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          let err = '';
          c.stdout.on('data', (d) => (out += d));
          c.stderr.on('data', (d) => (err += d));
          c.on('close', (code) => resolve({ code, out, err }));
        });
        expect(r.code, r.err).toBe(0);
        expect(r.out.trim()).toBe(`vigil_proxy|${dbEnv.POSTGRES_DB}`);
        await tg.waitForEvent((e) => e.type === 'db.query' && e.details.sql === 'SELECT current_user, current_database()');
      } finally {
        await tg.stop();
      }
    }, 120_000);
  });
});
