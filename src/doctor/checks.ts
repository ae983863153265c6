import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import { loadConfig, type LoadedConfig } from '../config/load.ts';
import type { TargetConfig, VigilConfig } from '../config/schema.ts';
import type { SecretRef } from '../config/types.ts';
import { ConfigError } from '../errors.ts';
import { CA_FILES, caDir } from '../identity/ca.ts';
import type { ProxyConfigPart } from '../config/proxy-config.ts';

/**
 * `vigil doctor`: every check a first start or a broken setup needs, each with OK/FAIL, what was found and,
 * on failure, what to do. Checks only read and connect; they never change anything and never print a
 * secret (a password reference is checked for being set/readable, not shown).
 */
export interface CheckResult {
  /** Area: config, listener, backend, clock, disk, permissions, ca. */
  check: string;
  /** What was checked (`ssh listener 0.0.0.0:2222`, `target pg-local`). */
  name: string;
  ok: boolean;
  detail: string;
  /** What to do about it (failures only). */
  fix?: string;
}

export interface DoctorOptions {
  configPath?: string;
  dataDir?: string;
  /** Free space below this in the data dir fails the disk check. */
  minFreeBytes: number;
  /** Per backend connection. */
  timeoutMs: number;
  /** The protocols the config may have sections for (the CLI passes the ones app/ registered). */
  proxies: readonly ProxyConfigPart[];
}

const ok = (check: string, name: string, detail: string): CheckResult => ({ check, name, ok: true, detail });
const fail = (check: string, name: string, detail: string, fix: string): CheckResult => ({ check, name, ok: false, detail, fix });

export async function runDoctor(opts: DoctorOptions): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  let loaded: LoadedConfig;
  try {
    loaded = loadConfig({ configPath: opts.configPath, dataDir: opts.dataDir, proxies: opts.proxies });
    const c = loaded.config;
    out.push(ok('config', loaded.file ?? '(built-in defaults)', `valid: ${c.targets.length} target(s), ${c.roles.length} role(s), data dir ${loaded.dataDir}`));
  } catch (e) {
    const key = e instanceof ConfigError && e.path ? e.path : undefined;
    out.push(fail('config', opts.configPath ?? process.env.VIGIL_CONFIG ?? '(built-in defaults)', (e as Error).message, key ? `correct ${key} in the config file (every key is documented in config/vigil.example.yaml), then run vigil config check` : 'fix the file named above, then run vigil config check'));
    return out;
  }
  const { config, dataDir } = loaded;
  out.push(...(await listenerChecks(config, opts.proxies)));
  out.push(...(await Promise.all(config.targets.map((t, i) => backendCheck(t, i, opts.timeoutMs)))));
  out.push(...secretChecks(config));
  out.push(clockCheck(dataDir));
  out.push(diskCheck(dataDir, opts.minFreeBytes));
  out.push(...permissionChecks(loaded));
  out.push(caCheck(dataDir));
  if (config.store.kind === 'postgres') {
    const { checkPostgresStore } = await import('../store/postgres-check.ts');
    const r = await checkPostgresStore(config.store, opts.timeoutMs);
    out.push(r.ok ? ok('store', r.name, r.detail) : fail('store', r.name, r.detail, r.fix ?? 'check store in the config'));
  }
  return out;
}

// ---- listeners ----------------------------------------------------------------------------------------

function listeners(config: VigilConfig, proxies: readonly ProxyConfigPart[]): { name: string; key: string; host: string; port: number }[] {
  const list: { name: string; key: string; host: string; port: number }[] = [];
  for (const p of proxies) {
    const s = (config as Record<string, unknown>)[p.name] as { enabled?: boolean; listen: { host: string; port: number } } | undefined;
    if (s?.enabled) list.push({ name: p.name, key: `${p.name}.listen`, ...s.listen });
  }
  if (config.api.enabled) list.push({ name: 'api', key: 'api.listen', ...config.api.listen });
  return list;
}

function tryBind(host: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(undefined)));
  });
}

/** Does a vigil gateway answer /healthz at this API address? (Then the ports in use are its own.) */
function vigilApiAnswers(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get({ host, port, path: '/healthz', rejectUnauthorized: false, timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve(/"audit"/.test(body)));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

async function listenerChecks(config: VigilConfig, proxies: readonly ProxyConfigPart[]): Promise<CheckResult[]> {
  const api = config.api.enabled ? config.api.listen : undefined;
  const gatewayRunning = api && api.port !== 0 ? await vigilApiAnswers(api.host === '0.0.0.0' ? '127.0.0.1' : api.host, api.port, 2000) : false;
  const results: CheckResult[] = [];
  for (const l of listeners(config, proxies)) {
    const where = `${l.host}:${l.port}`;
    const name = `${l.name} ${where}`;
    if (l.port === 0) {
      results.push(ok('listener', name, 'port 0: a free port is chosen at start'));
      continue;
    }
    const err = await tryBind(l.host, l.port);
    if (!err) results.push(ok('listener', name, 'free: the gateway can listen here'));
    else if (err === 'EADDRINUSE' && gatewayRunning) results.push(ok('listener', name, 'in use by the running vigil gateway (its API answers /healthz)'));
    else if (err === 'EADDRINUSE') results.push(fail('listener', name, 'in use by another process', `stop what listens on ${where} (ss -ltnp 'sport = :${l.port}') or set ${l.key} to a free port`));
    else if (err === 'EACCES') results.push(fail('listener', name, `not allowed to listen on port ${l.port}`, `use a port above 1023 in ${l.key}, or grant CAP_NET_BIND_SERVICE`));
    else if (err === 'EADDRNOTAVAIL') results.push(fail('listener', name, `${l.host} is not an address of this machine`, `set ${l.key} to an address of this machine (0.0.0.0 for all)`));
    else results.push(fail('listener', name, `cannot listen: ${err}`, `check ${l.key}`));
  }
  return results;
}

// ---- backends -----------------------------------------------------------------------------------------

/** Connect, send `hello` (if any), wait for the first bytes the server sends. */
function probe(host: string, port: number, timeoutMs: number, hello?: Buffer): Promise<{ data?: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    let connected = false;
    const done = (r: { data?: Buffer; error?: string }) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done({ error: connected ? `connected, but no answer within ${timeoutMs} ms: not the expected server` : `no connection within ${timeoutMs} ms` }), timeoutMs);
    sock.once('connect', () => {
      connected = true;
      if (hello) sock.write(hello);
    });
    sock.once('data', (d) => done({ data: d }));
    sock.once('error', (e: NodeJS.ErrnoException) => done({ error: e.code === 'ECONNREFUSED' ? 'connection refused' : (e.code ?? e.message) }));
    sock.once('end', () => done({ error: 'closed without a word' }));
  });
}

/** Postgres SSLRequest: 8 bytes; the server answers one byte, S (TLS on offer) or N. */
const PG_SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

async function backendCheck(t: TargetConfig, i: number, timeoutMs: number): Promise<CheckResult> {
  const name = `target ${t.name} (${t.protocol} ${t.host}:${t.port})`;
  const fixAddr = `start the ${t.protocol} server, or correct targets[${i}].host / targets[${i}].port; check firewalls between this machine and it`;
  if (t.protocol === 'ssh') {
    const r = await probe(t.host, t.port, timeoutMs);
    if (r.error?.startsWith('connected')) return fail('backend', name, `not an SSH server (no SSH- banner within ${timeoutMs} ms)`, `targets[${i}].port must be the SSH port`);
    if (r.error) return fail('backend', name, r.error, fixAddr);
    const banner = r.data!.toString('latin1').split('\r\n')[0];
    return banner.startsWith('SSH-') ? ok('backend', name, `answers: ${banner.slice(0, 60)}`) : fail('backend', name, 'not an SSH server (no SSH- banner)', `targets[${i}].port must be the SSH port`);
  }
  if (t.protocol === 'postgres') {
    const r = await probe(t.host, t.port, timeoutMs, PG_SSL_REQUEST);
    if (r.error) return fail('backend', name, r.error, fixAddr);
    const b = String.fromCharCode(r.data![0]);
    if (b !== 'S' && b !== 'N') return fail('backend', name, 'not a PostgreSQL server (unexpected answer to SSLRequest)', `targets[${i}].port must be the PostgreSQL port`);
    const wantsTls = t.tls === 'require' || t.tls === 'verify-full';
    if (wantsTls && b === 'N') return fail('backend', name, `PostgreSQL answers but offers no TLS, and targets[${i}].tls is ${String(t.tls)}`, `enable ssl on the server or set targets[${i}].tls: disable`);
    return ok('backend', name, `PostgreSQL answers (TLS ${b === 'S' ? 'offered' : 'not offered'})`);
  }
  if (t.protocol === 'mysql') {
    const r = await probe(t.host, t.port, timeoutMs);
    if (r.error) return fail('backend', name, r.error, fixAddr);
    const d = r.data!;
    // Packet header (3 bytes length, 1 sequence) then protocol version 10 and the server version string.
    if (d.length < 6 || d[4] !== 10) return fail('backend', name, d[4] === 0xff ? `the server refuses this host: ${d.subarray(7).toString('utf8').slice(0, 120)}` : 'not a MySQL/MariaDB server (no v10 greeting)', `targets[${i}].port must be the MySQL port and the server must accept connections from this host`);
    const end = d.indexOf(0, 5);
    return ok('backend', name, `answers: ${d.subarray(5, end > 5 ? end : 5 + 40).toString('latin1')}`);
  }
  const r = await probe(t.host, t.port, timeoutMs);
  return r.error && !r.error.startsWith('connected') ? fail('backend', name, r.error, fixAddr) : ok('backend', name, 'reachable over TCP');
}

/** Backend secrets given by reference: the variable is set / the file is readable (never shown). */
function secretChecks(config: VigilConfig): CheckResult[] {
  const out: CheckResult[] = [];
  config.targets.forEach((t, i) => {
    const ref = t.password as SecretRef | undefined;
    if (ref && 'env' in ref) {
      const set = process.env[ref.env] !== undefined && process.env[ref.env] !== '';
      out.push(set ? ok('secret', `target ${t.name} password`, `environment variable ${ref.env} is set`) : fail('secret', `target ${t.name} password`, `environment variable ${ref.env} is not set in this environment`, `export ${ref.env}=… in the environment the gateway runs in (systemd: Environment= or EnvironmentFile=), or use targets[${i}].password: { file: PATH }`));
    } else if (ref && 'file' in ref) {
      try {
        fs.accessSync(ref.file, fs.constants.R_OK);
        out.push(ok('secret', `target ${t.name} password`, `file ${ref.file} is readable`));
      } catch {
        out.push(fail('secret', `target ${t.name} password`, `file ${ref.file} cannot be read`, `make ${ref.file} readable by the user running vigil (chmod 600, owned by it)`));
      }
    }
  });
  return out;
}

// ---- clock, disk --------------------------------------------------------------------------------------

/**
 * No network time source is asked (the gateway may have none): the clock must be plausible and must not
 * be behind what this data dir already recorded, or certificates would be issued in the past and audit
 * records would go backwards.
 */
function clockCheck(dataDir: string): CheckResult {
  const now = Date.now();
  if (new Date(now).getUTCFullYear() < 2024) return fail('clock', 'system clock', `the clock says ${new Date(now).toISOString()}`, 'set the time (timedatectl set-ntp true, or chrony/systemd-timesyncd)');
  let newest = 0;
  let what = '';
  const consider = (p: string) => {
    try {
      const m = fs.statSync(p).mtimeMs;
      if (m > newest) [newest, what] = [m, p];
    } catch {
      // not there yet
    }
  };
  consider(path.join(caDir(dataDir), CA_FILES.x509CaCert));
  const auditDir = path.join(dataDir, 'audit');
  try {
    for (const f of fs.readdirSync(auditDir)) consider(path.join(auditDir, f));
  } catch {
    // no log yet
  }
  if (newest - now > 5 * 60_000) {
    return fail('clock', 'system clock', `the clock (${new Date(now).toISOString()}) is behind ${what}, written at ${new Date(newest).toISOString()}`, 'the clock went backwards: fix the time source (timedatectl set-ntp true) before starting the gateway');
  }
  return ok('clock', 'system clock', `${new Date(now).toISOString()}${newest ? ', not behind what the data dir recorded' : ''}`);
}

function diskCheck(dataDir: string, minFree: number): CheckResult {
  let dir = dataDir;
  while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  const s = fs.statfsSync(dir);
  const free = s.bavail * s.bsize;
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  return free >= minFree
    ? ok('disk', `free space at ${dir}`, `${gib(free)} free`)
    : fail('disk', `free space at ${dir}`, `${gib(free)} free, less than ${gib(minFree)}`, 'free space or move data_dir to a larger volume: when the audit log cannot be written, new sessions are refused');
}

// ---- permissions, CA ----------------------------------------------------------------------------------

function modeOf(p: string): number | undefined {
  try {
    return fs.statSync(p).mode & 0o777;
  } catch {
    return undefined;
  }
}

function permissionChecks(loaded: LoadedConfig): CheckResult[] {
  const out: CheckResult[] = [];
  const { config, dataDir } = loaded;
  const oct = (m: number) => m.toString(8).padStart(4, '0');
  const dirMode = modeOf(dataDir);
  if (dirMode !== undefined) {
    out.push((dirMode & 0o077) === 0 ? ok('permissions', dataDir, `data dir ${oct(dirMode)}`) : fail('permissions', dataDir, `data dir is ${oct(dirMode)}: others can read keys, recordings and the audit log`, `chmod 700 ${dataDir}`));
  }
  const secretFiles: string[] = [];
  const ca = caDir(dataDir);
  for (const f of [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey, CA_FILES.x509CaKey, CA_FILES.serverKey, CA_FILES.auditKey, CA_FILES.tokenKey]) secretFiles.push(path.join(ca, f));
  for (const t of config.targets) {
    if (typeof t.private_key === 'string') secretFiles.push(t.private_key);
    const ref = t.password as SecretRef | undefined;
    if (ref && 'file' in ref) secretFiles.push(ref.file);
  }
  const loose: string[] = [];
  let checked = 0;
  for (const f of secretFiles) {
    const m = modeOf(f);
    if (m === undefined) continue;
    checked++;
    if ((m & 0o077) !== 0) loose.push(`${f} (${oct(m)})`);
  }
  if (loose.length) out.push(fail('permissions', 'private keys and secret files', `readable by others: ${loose.join(', ')}`, `chmod 600 ${loose.map((l) => l.replace(/ \(\d+\)$/, '')).join(' ')}`));
  else out.push(ok('permissions', 'private keys and secret files', `${checked} file(s), all 0600 or stricter`));
  if (loaded.file) {
    const m = modeOf(loaded.file);
    if (m !== undefined && (m & 0o022) !== 0) out.push(fail('permissions', loaded.file, `config file is ${oct(m)}: others can change targets and roles`, `chmod go-w ${loaded.file}`));
  }
  return out;
}

function caCheck(dataDir: string): CheckResult {
  const dir = caDir(dataDir);
  const missing = [CA_FILES.userCa, CA_FILES.hostCa, CA_FILES.hostKey, CA_FILES.x509CaKey, CA_FILES.x509CaCert].filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length === 5) return fail('ca', dir, 'no CA yet', `run vigil init (or start the gateway once): it creates the CA and keys in ${dir}`);
  if (missing.length) return fail('ca', dir, `missing ${missing.join(', ')}`, `restore ${missing.join(', ')} from backup; moving ${dir} away creates a new CA and invalidates every issued certificate`);
  try {
    const cert = new crypto.X509Certificate(fs.readFileSync(path.join(dir, CA_FILES.x509CaCert)));
    if (!cert.checkPrivateKey(crypto.createPrivateKey(fs.readFileSync(path.join(dir, CA_FILES.x509CaKey))))) return fail('ca', dir, 'ca.key does not belong to ca.crt', 'restore the pair from backup');
    if (Date.parse(cert.validTo) < Date.now()) return fail('ca', dir, `the X.509 CA expired at ${cert.validTo}`, 'run vigil ca rotate');
    return ok('ca', dir, `present; X.509 CA valid until ${new Date(cert.validTo).toISOString().slice(0, 10)}`);
  } catch (e) {
    return fail('ca', dir, `unreadable: ${(e as Error).message}`, 'restore the CA files from backup');
  }
}
