import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * Guardrails on SSH exec through stock ssh against a real sshd. The target's sshd runs every command
 * through a ForceCommand that only writes it down (base64, one line) and runs nothing, so the test can
 * show which commands reached the target, and a guardrail bug could never run `rm -rf /`.
 */

let w: SshWorld;
let oncall: IssuedFiles;
let dev: IssuedFiles;
let log: string;

beforeAll(async () => {
  const dir = tempDir('vigil-guard-ssh-');
  fs.chmodSync(dir, 0o755);
  log = path.join(dir, 'reached.log');
  const wrapper = path.join(dir, 'log-only.sh');
  fs.writeFileSync(wrapper, ['#!/bin/sh', `printf '%s' "$SSH_ORIGINAL_COMMAND" | base64 -w0 >> ${log}`, `echo >> ${log}`, 'echo reached-target', ''].join('\n'), { mode: 0o755 });
  w = await startWorld({
    sshd: { overrides: { ForceCommand: wrapper } },
    config: {
      roles: [
        { name: 'dev', targets: ['*'], logins: ['*'] },
        { name: 'oncall', targets: ['*'], logins: ['*'] },
      ],
      guardrails: [{ name: 'careful-shell', targets: ['*'], roles: ['oncall'], ssh: { block_commands: ['rm -rf /', 'mkfs*'] } }],
    },
  });
  oncall = await w.issue({ user: 'olga', roles: ['oncall'] });
  dev = await w.issue({ user: 'dave', roles: ['dev'] });
}, 60_000);

afterAll(async () => {
  await w?.stop();
});

const reached = () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => Buffer.from(l, 'base64').toString('utf8')) : []);
const dest = () => `${w.sshd.user}@web1@127.0.0.1`;

describe('ssh exec guardrails with stock ssh', () => {
  it('a blocked command gets the rule on stderr and exit status 1, never reaches the target; an event records it', async () => {
    const r = await w.run('ssh', [...w.opts(oncall), dest(), 'rm -rf /']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('vigil: vigil guardrail "careful-shell" refused this command (command matches "rm -rf /")');
    expect(r.stdout).toBe('');
    expect(reached()).not.toContain('rm -rf /');
    const ev = await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === 'rm -rf /');
    expect(ev).toMatchObject({ outcome: 'failure', actor: { user: 'olga' }, details: { rule: 'careful-shell', decision: 'block' } });
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details?.command === 'rm -rf /');
    expect(exec).toMatchObject({ outcome: 'failure', details: { exit_status: 1, error: 'refused by guardrail careful-shell' } });
    expect(w.eventsOf('ssh.exec.start', (e) => e.details?.command === 'rm -rf /')).toHaveLength(0);
  });

  it('evasions from the corpus are refused on the words, allowed commands reach the target', async () => {
    const blocked = [
      'rm -fr /',
      'rm -r -f //',
      '/bin/rm --recursive --force /tmp/..',
      "'rm' -rf '/'",
      'rm \\\n -rf /',
      'rm${IFS}-rf${IFS}/',
      'echo hi; rm -rf /',
      'true && sudo -u root rm -rf /',
      'echo $(rm -rf /)',
      'sh -c "rm -rf /"',
      'mkfs.ext4 /dev/vigil-none',
      'sudo --user root rm -rf /',
      'sudo -Eu root rm -rf /',
      'env -S "rm -rf /"',
      'bash -c -- "rm -rf /"',
      'rm -rf ~/../..',
    ];
    for (const command of blocked) {
      const r = await w.run('ssh', [...w.opts(oncall), dest(), command]);
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toContain('guardrail "careful-shell"');
    }
    const allowed = ['uptime', 'rm -rf /tmp/vigil-guard-nothing', 'echo "rm -rf /"'];
    for (const command of allowed) {
      const r = await w.run('ssh', [...w.opts(oncall), dest(), command]);
      expect(r.code, `${command}: ${r.stderr}`).toBe(0);
      expect(r.stdout).toContain('reached-target');
    }
    const got = reached();
    for (const c of blocked) expect(got, c).not.toContain(c);
    for (const c of allowed) expect(got, c).toContain(c);
  });

  it('an unparsable command line is refused (on_unparsable: refuse) as guardrail.unparsed', async () => {
    const command = "echo 'unterminated";
    const r = await w.run('ssh', [...w.opts(oncall), dest(), command]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unparsable');
    await w.gw.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.command === command);
    expect(reached()).not.toContain(command);
  });

  it('the guardrail applies by role: a dev session is not under careful-shell', async () => {
    const r = await w.run('ssh', [...w.opts(dev), dest(), 'mkfs.ext4 /dev/vigil-none']);
    expect(r.code).toBe(0);
    expect(reached()).toContain('mkfs.ext4 /dev/vigil-none');
  });

  it('counts ssh decisions in vigil_guardrail_decisions_total', () => {
    const lines: string[] = [];
    w.gw.gw.services.guardrails!.renderMetrics(lines);
    const block = lines.find((l) => l.startsWith('vigil_guardrail_decisions_total{protocol="ssh",decision="block",rule="careful-shell"}'));
    expect(Number(block?.split(' ')[1])).toBeGreaterThanOrEqual(13);
  });
});
