import fs from 'node:fs';
import { afterAll, beforeAll } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { spawnClient, startWorld, type SshWorld, type WorldOptions } from './harness.ts';
import { oracleShell, type OracleShell } from './oracle-shell.ts';

/**
 * What the tests that type into a shell through a stock `ssh -tt` share: a world whose target runs the
 * oracle shell (it logs every command line it runs), and a driver that sends keys and waits for output.
 */

export interface OracleWorld {
  /** The gateway and its backend sshd; set once the describe's beforeAll ran. */
  readonly w: SshWorld;
  /** The certificate files of the user the tests connect as. */
  readonly alice: IssuedFiles;
  readonly oracle: OracleShell;
  /** The temporary directory of the oracle's files, removed after the describe. */
  readonly dir: string;
}

/**
 * Register the hooks of a describe on a world whose target shell is the oracle: started before its tests,
 * stopped (and `dir`, named from `dirPrefix`, removed) after them.
 */
export function useOracleWorld(dirPrefix: string, opts: { config?: WorldOptions['config']; worldWritableDir?: boolean } = {}): OracleWorld {
  let started: OracleWorld | undefined;
  let dir: string | undefined;
  let w: SshWorld | undefined;

  beforeAll(async () => {
    dir = tempDir(dirPrefix);
    // The strict-durability tests have their shell commands write files there.
    if (opts.worldWritableDir) fs.chmodSync(dir, 0o777);
    const oracle = oracleShell(dir);
    w = await startWorld({ sshd: { extraConfig: oracle.sshdConfig }, ...(opts.config ? { config: opts.config } : {}) });
    started = { w, alice: await w.issue(), oracle, dir };
  }, 30_000);

  afterAll(async () => {
    await w?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const get = (): OracleWorld => {
    if (!started) throw new Error('the oracle world is not started yet (useOracleWorld: used outside a test?)');
    return started;
  };
  return {
    get w() {
      return get().w;
    },
    get alice() {
      return get().alice;
    },
    get oracle() {
      return get().oracle;
    },
    get dir() {
      return get().dir;
    },
  };
}

/** Keys to send, output to wait for (after what was waited for before), or a pause that only paces the sending. */
export type PtyStep = { send: string } | { until: string | RegExp } | { pause: number };

/**
 * Stock `ssh` (by default `-tt`) to web1 fed from a pipe, step by step; its stdin closed after the last
 * step. Resolves once the client exited, with the number of gateway events before it started (for
 * `sessionEndedAfter`) and all it printed.
 */
export async function typeIntoSsh(
  w: SshWorld,
  creds: IssuedFiles,
  steps: PtyStep[],
  opts: { args?: string[]; sshOptions?: string[] } = {},
): Promise<{ mark: number; stdout: string }> {
  const mark = w.gw.events.length;
  const c = spawnClient('ssh', [...w.opts(creds, opts.sshOptions ?? ['-tt']), 'web1@127.0.0.1', ...(opts.args ?? [])]);
  let seen = 0;
  try {
    for (const s of steps) {
      if ('send' in s) c.child.stdin!.write(s.send);
      else if ('pause' in s) await new Promise((r) => setTimeout(r, s.pause));
      else {
        await waitFor(() => {
          const out = c.stdout().slice(seen);
          const m = typeof s.until === 'string' ? out.indexOf(s.until) : out.search(s.until);
          if (m < 0) return false;
          seen += m + 1;
          return true;
        }, 15_000, `output ${s.until}\n--- so far:\n${c.stdout()}`);
      }
    }
    c.child.stdin!.end();
    await c.exited;
  } finally {
    c.child.kill('SIGKILL');
  }
  return { mark, stdout: c.stdout() };
}

/** The session.start of the first session that started after event number `mark`, once its session.end is in. */
export async function sessionEndedAfter(w: SshWorld, mark: number): Promise<AuditEvent> {
  const start = await w.gw.waitForEvent((e) => w.gw.events.indexOf(e) >= mark && e.type === 'session.start');
  await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === start.session_id);
  return start;
}
