import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeBlock, writeBlock } from './marked-block.ts';

/**
 * What `vigil login` leaves on the user's machine so stock clients just work: the key pair it generated
 * and the certificates for it in ~/.vigil (0600), and vigil's marked block in ~/.ssh/config (an Include
 * of ~/.vigil/ssh_config, one Host per SSH target), ~/.ssh/known_hosts, ~/.pg_service.conf (one service
 * per Postgres target) and ~/.my.cnf (one option group per MySQL target). Paths are absolute: OpenSSH
 * expands `~` from the password database, not $HOME, and vigil writes under $HOME.
 */

/** The answer of the gateway's login endpoints (src/identity/oidc/routes.ts loginView). */
export interface LoginView {
  user: string;
  roles: string[];
  groups: string[];
  subject: string;
  certificate: { serial: string; not_before: string; not_after: string; ssh_certificate: string; x509_certificate: string; ca_certificate: string };
  gateway: { ports: { ssh: number | null; postgres: number | null; mysql: number | null; api: number | null }; ssh_host_key: string; ssh_host_ca: string };
  targets: Array<{ name: string; protocol: string; login?: string | null; database?: string | null }>;
}

export interface VigilFiles {
  home: string;
  dir: string;
  sshKey: string;
  sshPub: string;
  sshCert: string;
  tlsKey: string;
  tlsCert: string;
  caCert: string;
  session: string;
  sshInclude: string;
  sshConfig: string;
  knownHosts: string;
  pgService: string;
  myCnf: string;
}

/** $HOME first (tests and containers set it), the password database otherwise. */
export function homeDir(): string {
  return process.env.HOME || os.homedir();
}

export function vigilFiles(home = homeDir()): VigilFiles {
  const dir = path.join(home, '.vigil');
  return {
    home,
    dir,
    sshKey: path.join(dir, 'id_ed25519'),
    sshPub: path.join(dir, 'id_ed25519.pub'),
    sshCert: path.join(dir, 'id_ed25519-cert.pub'),
    tlsKey: path.join(dir, 'tls.key'),
    tlsCert: path.join(dir, 'tls.crt'),
    caCert: path.join(dir, 'ca.crt'),
    session: path.join(dir, 'session.json'),
    sshInclude: path.join(dir, 'ssh_config'),
    sshConfig: path.join(home, '.ssh', 'config'),
    knownHosts: path.join(home, '.ssh', 'known_hosts'),
    pgService: path.join(home, '.pg_service.conf'),
    myCnf: path.join(home, '.my.cnf'),
  };
}

/** What `vigil status` and `vigil logout` read back. */
export interface SavedSession {
  gateway: string;
  user: string;
  roles: string[];
  groups: string[];
  subject: string;
  serial: string;
  not_after: string;
  targets: LoginView['targets'];
}

/** MySQL option-group suffix for a target: `prod-my` → `_prod_my` (`mysql --defaults-group-suffix=_prod_my`). */
export function mysqlGroupSuffix(target: string): string {
  return '_' + target.replace(/[^A-Za-z0-9_]/g, '_');
}

/** A config value on one line: vigil never writes a newline an attacker-chosen name could smuggle in. */
function one(v: string): string {
  if (/[\r\n]/.test(v)) throw new Error(`refusing to write a value with a line break: ${JSON.stringify(v)}`);
  return v;
}

export function writeFile0600(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text.endsWith('\n') ? text : text + '\n', { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

/** Client configuration for `view`, reaching the gateway at `host`. Returns the files it changed. */
export function writeClientConfig(f: VigilFiles, view: LoginView, host: string): string[] {
  const changed: string[] = [];
  const note = (file: string, did: boolean) => did && changed.push(file);
  const p = view.gateway.ports;
  const ssh = view.targets.filter((t) => t.protocol === 'ssh');
  const pg = view.targets.filter((t) => t.protocol === 'postgres');
  const my = view.targets.filter((t) => t.protocol === 'mysql');

  if (p.ssh) {
    const hosts = ssh.flatMap((t) => [
      `Host ${one(t.name)}`,
      `    HostName ${one(host)}`,
      `    Port ${p.ssh}`,
      `    User ${one(t.login ? `${t.login}@${t.name}` : t.name)}`,
      `    IdentityFile ${f.sshKey}`,
      `    CertificateFile ${f.sshCert}`,
      '    IdentitiesOnly yes',
      `    UserKnownHostsFile ${f.knownHosts}`,
      '',
    ]);
    writeFile0600(f.sshInclude, [`# SSH targets ${view.user} may reach through vigil; rewritten by every \`vigil login\`.`, '', ...hosts].join('\n'));
    note(f.sshConfig, writeBlock(f.sshConfig, [`Include ${f.sshInclude}`], 'top'));
    const name = p.ssh === 22 ? host : `[${host}]:${p.ssh}`;
    const key = view.gateway.ssh_host_key.split(' ').slice(0, 2).join(' ');
    const ca = view.gateway.ssh_host_ca.split(' ').slice(0, 2).join(' ');
    // The gateway's own key is what ssh checks today (ssh2 presents no host certificate); the host CA line
    // keeps working when it does.
    note(f.knownHosts, writeBlock(f.knownHosts, [`${one(name)} ${key}`, `@cert-authority ${one(name)} ${ca}`], 'end'));
  }
  if (p.postgres && pg.length) {
    const services = pg.flatMap((t) => [
      `[${one(t.name)}]`,
      `host=${one(host)}`,
      `port=${p.postgres}`,
      `dbname=${one(t.name)}`,
      `user=${one(view.user)}`,
      'sslmode=verify-full',
      `sslrootcert=${f.caCert}`,
      `sslcert=${f.tlsCert}`,
      `sslkey=${f.tlsKey}`,
      '',
    ]);
    note(f.pgService, writeBlock(f.pgService, services.slice(0, -1), 'end'));
  } else note(f.pgService, removeBlock(f.pgService));
  if (p.mysql && my.length) {
    const groups = my.flatMap((t) => [
      `[client${mysqlGroupSuffix(t.name)}]`,
      `host=${one(host)}`,
      `port=${p.mysql}`,
      `user=${one(t.name)}`,
      `ssl-ca=${f.caCert}`,
      `ssl-cert=${f.tlsCert}`,
      `ssl-key=${f.tlsKey}`,
      'ssl-verify-server-cert',
      '',
    ]);
    note(f.myCnf, writeBlock(f.myCnf, groups.slice(0, -1), 'end'));
  } else note(f.myCnf, removeBlock(f.myCnf));
  return changed;
}

/** Everything `vigil login` wrote: keys, certificates, the session, and its blocks in the user's files. */
export function removeClientConfig(f: VigilFiles): string[] {
  const removed: string[] = [];
  for (const file of [f.sshKey, f.sshPub, f.sshCert, f.tlsKey, f.tlsCert, f.session, f.sshInclude]) {
    if (fs.existsSync(file)) {
      fs.rmSync(file);
      removed.push(file);
    }
  }
  for (const file of [f.sshConfig, f.knownHosts, f.pgService, f.myCnf]) if (removeBlock(file)) removed.push(file);
  return removed;
}
