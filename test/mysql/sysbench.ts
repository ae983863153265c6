import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { IssuedFiles } from '../support/gateway.ts';

/**
 * Runs the installed sysbench (1.0.x, libmariadb). Its `--mysql-ssl=on` loads `cacert.pem`,
 * `client-cert.pem` and `client-key.pem` from the working directory, so a vigil certificate is presented
 * by running it in a directory holding those three files.
 */
export interface SysbenchRun {
  tps: number;
  qps: number;
  latencyAvgMs: number;
  latencyP95Ms: number;
  errors: number;
  stdout: string;
}

export interface SysbenchOptions {
  test: string;
  command: 'prepare' | 'run' | 'cleanup';
  port: number;
  user: string;
  password?: string;
  db: string;
  /** Directory with the vigil certificate files (see `sysbenchCertDir`); plaintext without. */
  certDir?: string;
  threads?: number;
  time?: number;
  tableSize?: number;
  extra?: string[];
}

/** A directory with the file names sysbench's `--mysql-ssl=on` expects. */
export function sysbenchCertDir(creds: IssuedFiles, parent: string): string {
  const dir = fs.mkdtempSync(path.join(parent, 'sysbench-'));
  fs.copyFileSync(creds.ca, path.join(dir, 'cacert.pem'));
  fs.copyFileSync(creds.crt, path.join(dir, 'client-cert.pem'));
  fs.copyFileSync(creds.key, path.join(dir, 'client-key.pem'));
  fs.chmodSync(path.join(dir, 'client-key.pem'), 0o600);
  return dir;
}

export function sysbench(o: SysbenchOptions): Promise<SysbenchRun> {
  const args = [
    o.test,
    '--db-driver=mysql',
    '--mysql-host=127.0.0.1',
    `--mysql-port=${o.port}`,
    `--mysql-user=${o.user}`,
    `--mysql-password=${o.password ?? ''}`,
    `--mysql-db=${o.db}`,
    `--threads=${o.threads ?? 1}`,
    `--time=${o.time ?? 5}`,
    `--table-size=${o.tableSize ?? 10000}`,
    '--tables=1',
    '--report-interval=0',
    ...(o.certDir ? ['--mysql-ssl=on'] : []),
    ...(o.extra ?? []),
    o.command,
  ];
  return new Promise((resolve, reject) => {
    const c = spawn('sysbench', args, { cwd: o.certDir ?? process.cwd(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('error', reject);
    // 'close', not 'exit': the last output may still be unread when the process exits.
    c.on('close', (code) => {
      if (code !== 0) return reject(new Error(`sysbench ${o.test} ${o.command} exited ${code}: ${(stderr + stdout).slice(-3000)}`));
      const num = (re: RegExp) => Number(re.exec(stdout)?.[1] ?? NaN);
      resolve({
        tps: num(/transactions:\s+\d+\s+\(([\d.]+) per sec/),
        qps: num(/queries:\s+\d+\s+\(([\d.]+) per sec/),
        latencyAvgMs: num(/avg:\s+([\d.]+)/),
        latencyP95Ms: num(/95th percentile:\s+([\d.]+)/),
        errors: num(/ignored errors:\s+(\d+)/),
        stdout,
      });
    });
  });
}
