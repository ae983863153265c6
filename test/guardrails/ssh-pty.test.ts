import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, interactive, type SshWorld } from '../ssh/harness.ts';
import { oracleShell, type OracleShell } from '../ssh/oracle-shell.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * Guardrails on the Enter of a pty shell line, through stock `ssh -tt` into a real bash (readline) on a
 * real sshd. The target's shell is the oracle (test/ssh/oracle-shell.ts): it logs every command line it
 * executes, so the test shows what reached the target. The blocked pattern is harmless (`touch` of a
 * marker file in the test's own directory).
 */

const RULE = 'careful-touch';

describe('guardrails on interactive pty shell lines (batched durability)', () => {
  let w: SshWorld;
  let oncall: IssuedFiles;
  let dev: IssuedFiles;
  let dir: string;
  let oracle: OracleShell;
  beforeAll(async () => {
    dir = tempDir('vigil-guard-pty-');
    fs.chmodSync(dir, 0o777);
    oracle = oracleShell(dir);
    w = await startWorld({
      sshd: { extraConfig: oracle.sshdConfig },
      config: {
        roles: [
          { name: 'dev', targets: ['*'], logins: ['*'] },
          { name: 'oncall', targets: ['*'], logins: ['*'] },
        ],
        guardrails: [{ name: RULE, targets: ['*'], roles: ['oncall'], ssh: { block_commands: ['touch *-guarded-*'] } }],
      },
    });
    oncall = await w.issue({ user: 'olga', roles: ['oncall'] });
    dev = await w.issue({ user: 'dave', roles: ['dev'] });
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an allowed line runs; a blocked one never reaches the shell, the user is told, the shell goes on', async () => {
    const marker = path.join(dir, 'x-guarded-1');
    const blocked = `touch ${marker}`;
    const s = interactive(w, oncall);
    try {
      await s.until(oracle.prompt);
      s.send('echo allowed-$((6*7))\r');
      await s.until('allowed-42\r\n');
      await s.until(oracle.prompt);
      s.send(`${blocked}\r`);
      await s.until(`vigil: guardrail "${RULE}" refused this command (command matches "touch *-guarded-*"); it was not sent to the target.`);
      // The same shell, the same prompt: the next line runs.
      s.send('echo after-$((1+1))\r');
      await s.until('after-2\r\n');
      await s.until(oracle.prompt);
      // Typed key by key, as a person would; Enter alone. After the message the line is redrawn as it
      // was (prompt and typed text), then the shell's own redraw for Ctrl-U clears the typed text.
      for (const k of `${blocked}b`) {
        s.send(k);
        await new Promise((r) => setTimeout(r, 3));
      }
      await s.until(`${blocked}b`);
      s.send('\r');
      await s.until(`refused this command (command matches "touch *-guarded-*"); it was not sent to the target.`);
      await s.until(`this target; ask an administrator if this command is needed.\r\n${oracle.prompt}${blocked}b`);
      s.send('echo again-$((2+2))\r');
      await s.until('again-4\r\n');
      await s.until(oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    expect(fs.existsSync(marker)).toBe(false);
    expect(fs.existsSync(`${marker}b`)).toBe(false);
    const ran = oracle.commands();
    expect(ran).toContain('echo again-$((2+2))');
    expect(ran).toContain('echo allowed-$((6*7))');
    expect(ran).toContain('echo after-$((1+1))');
    expect(ran.some((c) => c.includes('x-guarded-1'))).toBe(false);
    const ev = await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === blocked);
    expect(ev).toMatchObject({ outcome: 'failure', actor: { user: 'olga' }, details: { rule: RULE, decision: 'block', source: 'terminal', prompt: oracle.prompt.trim() } });
    expect(typeof ev.details.channel).toBe('number');
    // The line's ssh.command says it was refused; none claims it ran. The second refusal came after the
    // awaited event: read the session's records once its session.end (which comes after them) is in.
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === ev.session_id);
    const cmds = w.eventsOf('ssh.command', (e) => e.session_id === ev.session_id && String(e.details.command ?? '').includes('x-guarded-1'));
    expect(cmds.map((e) => [e.outcome, e.details.refused_by])).toEqual([['failure', RULE], ['failure', RULE]]);
    await w.gw.waitForEvent((e) => e.type === 'ssh.command' && e.session_id === ev.session_id && e.details.command === 'echo after-$((1+1))' && e.outcome === 'success');
    const lines: string[] = [];
    w.gw.gw.services.guardrails!.renderMetrics(lines);
    expect(lines.some((l) => l.startsWith(`vigil_guardrail_decisions_total{protocol="ssh",decision="block",rule="${RULE}"}`))).toBe(true);
  });

  it('evasions by quoting, escapes, a second command or typing ahead are refused; typeahead after a refused line is dropped', async () => {
    oracle.reset();
    const lines = [
      `t\\ouch ${dir}/x-guarded-2`,
      `"touch" ${dir}/x-guarded-3`,
      `echo hi; /usr/bin/touch ${dir}/x-guarded-4`,
      `sudo -n touch ${dir}/x-guarded-5 || true`,
    ];
    const s = interactive(w, oncall);
    try {
      await s.until(oracle.prompt);
      for (const line of lines) {
        s.send(`${line}\r`);
        await s.until(`vigil: guardrail "${RULE}" refused this command`);
      }
      // Several lines in one write: the first runs, the blocked second is refused, the third is dropped.
      s.send(`echo first-$((2+3))\rtouch ${dir}/x-guarded-6\recho dropped-$((4+4))\r`);
      // The refusal is told when it is decided: before the output of the lines forwarded ahead of it.
      await s.until(`vigil: guardrail "${RULE}" refused this command`);
      await s.until('first-5\r\n');
      s.send('echo still-$((3*3))\r');
      await s.until('still-9\r\n');
      await s.until(oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    for (let i = 2; i <= 6; i++) expect(fs.existsSync(path.join(dir, `x-guarded-${i}`)), `x-guarded-${i}`).toBe(false);
    const ran = oracle.commands();
    expect(ran.some((c) => c.includes('-guarded-'))).toBe(false);
    expect(ran).toContain('echo first-$((2+3))');
    expect(ran).toContain('echo still-$((3*3))');
    expect(ran).not.toContain('echo dropped-$((4+4))');
    for (const line of lines) await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === line && e.details?.source === 'terminal');
    // Typed ahead (its prompt not drawn yet): hidden from ssh.command.start, still checked on its keys.
    const ahead = await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === `touch ${dir}/x-guarded-6`);
    expect(ahead.details).toMatchObject({ hidden: true, source: 'terminal', rule: RULE });
  });

  it('a line the keystrokes cannot rebuild (history recall) is refused as unparsable', async () => {
    oracle.reset();
    const s = interactive(w, oncall);
    try {
      await s.until(oracle.prompt);
      s.send('echo recalled-$((5+5))\r');
      await s.until('recalled-10\r\n');
      await s.until(oracle.prompt);
      // Up arrow: what runs is only known to the shell (here the harmless echo, but it could be anything).
      s.send('\x1b[A');
      await s.until('echo recalled-$((5+5))');
      s.send('\r');
      await s.until(`vigil: guardrail "${RULE}" refused this command (unparsable:`);
      s.send('echo typed-$((7+7))\r');
      await s.until('typed-14\r\n');
      // History expansion: `: touch …` is allowed (`:` runs nothing), `!!:1-2` would make it `touch …`.
      s.send(`: touch ${dir}/x-guarded-7\r`);
      await s.until(oracle.prompt);
      s.send('!!:1-2\r');
      await s.until(`vigil: guardrail "${RULE}" refused this command (unparsable: history expansion`);
      s.send('echo last-$((9+9))\r');
      await s.until('last-18\r\n');
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    expect(oracle.commands().filter((c) => c === 'echo recalled-$((5+5))')).toHaveLength(1);
    expect(fs.existsSync(path.join(dir, 'x-guarded-7'))).toBe(false);
    expect(oracle.commands().some((c) => c.startsWith('touch'))).toBe(false);
    const ev = await w.gw.waitForEvent((e) => e.type === 'guardrail.unparsed' && e.details?.source === 'terminal');
    expect(ev.details).toMatchObject({ rule: RULE, exact: false, keys: '\x1b[A' });
  });

  it('the answer to a password prompt is not checked (nor recorded), even one sh could not parse', async () => {
    const secret = "pw-with-'quote";
    const s = interactive(w, oncall);
    const mark = w.gw.events.length;
    try {
      await s.until(oracle.prompt);
      s.send('read -s -p "Password: " pw; echo len=${#pw}\r');
      await s.until('Password: ');
      s.send(`${secret}\r`);
      await s.until(`len=${secret.length}`);
      await s.until(oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    expect(s.c.stdout()).not.toContain('refused this command');
    const later = w.gw.events.slice(mark);
    expect(JSON.stringify(later)).not.toContain(secret);
    expect(later.filter((e) => e.type.startsWith('guardrail.'))).toEqual([]);
  });

  it('a role the guardrail does not apply to is not checked: the line runs', async () => {
    oracle.reset();
    const marker = path.join(dir, 'x-guarded-dev');
    const s = interactive(w, dev);
    const before = w.eventsOf('guardrail.blocked').length;
    try {
      await s.until(oracle.prompt);
      s.send(`touch ${marker}; echo made-$((8+1))\r`);
      await s.until('made-9\r\n');
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    expect(fs.existsSync(marker)).toBe(true);
    expect(oracle.commands()).toContain(`touch ${marker}; echo made-$((8+1))`);
    expect(w.eventsOf('guardrail.blocked')).toHaveLength(before);
  });
});

describe('guardrails on pty shell lines in strict durability', () => {
  let w: SshWorld;
  let oncall: IssuedFiles;
  let dir: string;
  let oracle: OracleShell;
  beforeAll(async () => {
    dir = tempDir('vigil-guard-pty-strict-');
    fs.chmodSync(dir, 0o777);
    oracle = oracleShell(dir);
    w = await startWorld({
      sshd: { extraConfig: oracle.sshdConfig },
      config: {
        audit: { durability: 'strict' },
        roles: [{ name: 'oncall', targets: ['*'], logins: ['*'] }],
        guardrails: [{ name: RULE, targets: ['*'], roles: ['oncall'], ssh: { block_commands: ['touch *-guarded-*'] } }],
      },
    });
    oncall = await w.issue({ user: 'olga', roles: ['oncall'] });
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a refused line has no ssh.command.start; allowed lines around it do', async () => {
    const marker = path.join(dir, 'x-guarded-strict');
    const s = interactive(w, oncall);
    try {
      await s.until(oracle.prompt);
      s.send(`touch ${marker}\r`);
      await s.until(`vigil: guardrail "${RULE}" refused this command`);
      s.send('echo ok-$((1+2))\r');
      await s.until('ok-3\r\n');
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    expect(fs.existsSync(marker)).toBe(false);
    const ev = await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === `touch ${marker}`);
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === ev.session_id);
    const starts = w.eventsOf('ssh.command.start', (e) => e.session_id === ev.session_id).map((e) => e.details.command);
    expect(starts).toEqual(['echo ok-$((1+2))', 'exit']);
  });
});
