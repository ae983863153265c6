import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, interactive, type SshWorld } from './harness.ts';
import { oracleShell, type OracleShell } from './oracle-shell.ts';
import { CommandTracker, type TerminalCommand } from '../../proxies/ssh/terminal/index.ts';
import { PtyShell } from '../ssh-codec/pty-shell.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir, waitFor } from '../support/tmp.ts';

/**
 * The alternate screen is a mode bit the user's own output can set: a shell kept there (by `printf
 * '\e[?1049h'`, a PS1 or a .bashrc) must not hide its commands from the log and the guardrails. Only a
 * full-screen program (vim, less …) has its Enters taken for keys.
 */

const RULE = 'careful-touch';
const ALT_ON = "printf '\\033[?1049h'";

describe('a shell on the alternate screen (stock ssh -tt, real bash, guardrails)', () => {
  let w: SshWorld;
  let oncall: IssuedFiles;
  let dir: string;
  let oracle: OracleShell;
  beforeAll(async () => {
    dir = tempDir('vigil-alt-screen-');
    fs.chmodSync(dir, 0o777);
    oracle = oracleShell(dir);
    w = await startWorld({
      sshd: { extraConfig: oracle.sshdConfig },
      config: {
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

  it('after printf switches to the alternate screen, a blocked line is refused and the others are recorded', async () => {
    const marker = path.join(dir, 'x-guarded-alt');
    const s = interactive(w, oncall);
    try {
      await s.until(oracle.prompt);
      s.send(`${ALT_ON}\r`);
      await s.until('\x1b[?1049h');
      await s.until(oracle.prompt);
      s.send(`touch ${marker}\r`);
      await s.until(`vigil: guardrail "${RULE}" refused this command`);
      s.send('echo alt-$((6*7))\r');
      await s.until('alt-42\r\n');
      await s.until(oracle.prompt);
      s.send('exit\r');
      await s.c.exited;
    } finally {
      s.c.child.kill('SIGKILL');
    }
    expect(fs.existsSync(marker)).toBe(false);
    expect(oracle.commands()).not.toContain(`touch ${marker}`);
    const blocked = await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details.command === `touch ${marker}`);
    expect(blocked.details).toMatchObject({ rule: RULE, source: 'terminal', prompt: oracle.prompt.trim() });
    // What ran on the alternate screen is on record like any other line.
    const echo = await w.gw.waitForEvent((e) => e.type === 'ssh.command' && e.session_id === blocked.session_id && e.details.command === 'echo alt-$((6*7))');
    expect(echo.outcome).toBe('success');
    expect(w.eventsOf('ssh.command', (e) => e.session_id === blocked.session_id && e.details.command === ALT_ON)).toHaveLength(1);
  }, 60_000);
});

describe('CommandTracker on the alternate screen (real bash on a pty)', () => {
  let dir: string;
  let sh: PtyShell;
  let tracker: CommandTracker;
  const commands: TerminalCommand[] = [];
  beforeAll(async () => {
    dir = tempDir('vigil-alt-tracker-');
    fs.writeFileSync(path.join(dir, 'long.txt'), Array.from({ length: 200 }, (_, i) => `line ${i}`).join('\n') + '\n');
    tracker = new CommandTracker({ cols: 80, rows: 24, onCommand: (c) => commands.push(c) });
    sh = new PtyShell({ cwd: dir, cols: 80, rows: 24, env: { PS1: 'alt:\\W\\$ ', HISTFILE: path.join(dir, '.hist') } });
    sh.onOutput((b) => tracker.output(b));
    await sh.waitForOutput('alt:');
    await sh.settle();
  });
  afterAll(async () => {
    await sh?.close();
    tracker?.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function type(...keys: string[]): Promise<void> {
    for (const k of keys) {
      tracker.input(Buffer.from(k));
      sh.write(k);
      await sh.settle(20);
    }
  }
  let seen = 0;
  async function next(n = 1): Promise<string[]> {
    await sh.settle(100);
    await tracker.flush();
    await waitFor(() => commands.length >= seen + n, 5_000, `${n} command(s)`);
    const got = commands.slice(seen).map((c) => c.command);
    seen = commands.length;
    return got;
  }
  const chars = (s: string) => [...s];

  it('reads a shell kept on the alternate screen; vim and less there still report nothing typed inside them', async () => {
    await type(...chars(ALT_ON), '\r');
    expect(await next()).toEqual([ALT_ON]);
    await type(...chars('echo on-$((1+1))'), '\r');
    expect(await next()).toEqual(['echo on-$((1+1))']);

    // vim from the shell on the alternate screen: its lines are not commands.
    const file = path.join(dir, 'notes.txt');
    await type(...chars(`vim -u NONE -N ${file}`), '\r');
    expect(await next()).toEqual([`vim -u NONE -N ${file}`]);
    await sh.settle(300);
    const mark = sh.output.length;
    await type('i', ...chars('rm -rf /srv'), '\r', ...chars('echo not-a-command'), '\r', '\x1b', ...chars(':wq'), '\r');
    await waitFor(() => fs.existsSync(file), 5_000, 'vim to write the file');
    // vim leaves the alternate screen on exit (keys typed before that are vim's, as before).
    await sh.waitForOutput('\x1b[?1049l', mark);
    await type(...chars('echo after-vim'), '\r');
    expect(await next()).toEqual(['echo after-vim']);

    // less: a search and Enters to scroll.
    await type(...chars('less long.txt'), '\r');
    expect(await next()).toEqual(['less long.txt']);
    await sh.settle(300);
    const lessMark = sh.output.length;
    await type('/', ...chars('line 150'), '\r', '\r', '\r', 'q');
    await sh.waitForOutput('\x1b[?1049l', lessMark);
    await type(...chars('echo after-less'), '\r');
    expect(await next()).toEqual(['echo after-less']);
    expect(fs.readFileSync(file, 'utf8')).toBe('rm -rf /srv\necho not-a-command\n\n');
  }, 30_000);

  it('on the normal screen, vim started by `sudo`-style wrappers is still a full-screen program', async () => {
    await type(...chars("printf '\\033[?1049l'"), '\r');
    expect(await next()).toEqual(["printf '\\033[?1049l'"]);
    const mark = sh.output.length;
    const file = path.join(dir, 'env-notes.txt');
    await type(...chars(`env TERM=xterm vim -u NONE -N ${file}`), '\r');
    expect(await next()).toEqual([`env TERM=xterm vim -u NONE -N ${file}`]);
    await sh.settle(300);
    await type('i', ...chars('touch nothing'), '\r', '\x1b', ...chars(':wq'), '\r');
    await waitFor(() => fs.existsSync(file), 5_000, 'vim to write the file');
    await sh.waitForOutput('\x1b[?1049l', mark);
    await type(...chars('echo done'), '\r');
    expect(await next()).toEqual(['echo done']);
  }, 30_000);
});
