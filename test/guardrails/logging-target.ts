import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { Guardrails, guardrailsSchema } from '../../src/guardrails/index.ts';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/** The rule the guardrail e2e tests check lines against, offline. */
const careful = new Guardrails(guardrailsSchema().parse([{ name: 'careful', ssh: { block_commands: ['rm -rf /'] } }]));

/** What a session of role `oncall` on a target decides for `line`: allow, block or unparsed. */
export function decide(line: string, guardrails = careful): string {
  const d = guardrails.forSession({ roles: ['oncall'], target: 'box' })!.checkCommand(line);
  return d.action === 'allow' ? 'allow' : d.unparsed ? 'unparsed' : 'block';
}

export interface LoggingTarget {
  readonly w: SshWorld;
  readonly oncall: IssuedFiles;
  /** The command lines that reached the target's sshd, in order. */
  reached(): string[];
  /** `ssh <user>@web1@gateway <command>` through vigil as olga (role oncall). */
  ssh(command: string): ReturnType<SshWorld['run']>;
}

/**
 * A real sshd behind vigil whose ForceCommand only writes down each command it is given (nothing runs),
 * with the guardrail `careful-shell` (`rm -rf /` blocked) for role oncall. Registers its own beforeAll
 * and afterAll: call it inside a describe.
 */
export function useLoggingTarget(tempPrefix: string): LoggingTarget {
  let w: SshWorld;
  let oncall: IssuedFiles;
  let log: string;
  beforeAll(async () => {
    const dir = tempDir(tempPrefix);
    fs.chmodSync(dir, 0o755);
    log = path.join(dir, 'reached.log');
    const forceCommand = path.join(dir, 'log-only.sh');
    fs.writeFileSync(forceCommand, ['#!/bin/sh', `printf '%s' "$SSH_ORIGINAL_COMMAND" | base64 -w0 >> ${log}`, `echo >> ${log}`, 'echo reached-target', ''].join('\n'), { mode: 0o755 });
    w = await startWorld({
      sshd: { overrides: { ForceCommand: forceCommand } },
      config: {
        roles: [{ name: 'oncall', targets: ['*'], logins: ['*'] }],
        guardrails: [{ name: 'careful-shell', targets: ['*'], roles: ['oncall'], ssh: { block_commands: ['rm -rf /'] } }],
      },
    });
    oncall = await w.issue({ user: 'olga', roles: ['oncall'] });
  }, 60_000);
  afterAll(async () => {
    await w?.stop();
  });
  return {
    get w() {
      return w;
    },
    get oncall() {
      return oncall;
    },
    reached: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'base64').toString('utf8')) : []),
    ssh: (command) => w.run('ssh', [...w.opts(oncall), `${w.sshd.user}@web1@127.0.0.1`, command]),
  };
}
