import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { startWorld, spawnClient, type SshWorld } from './harness.ts';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';
import { sessionEndedAfter, typeIntoSsh, useOracleWorld, type PtyStep } from './pty-driver.ts';

/**
 * Command reconstruction against an oracle: the backend bash logs every command line it runs, and every
 * logged line must have an `ssh.command` event with the same text (bash's history drops a
 * backslash-newline continuation, so that is compared without it).
 */
describe('ssh.command events match what the shell ran', () => {
  const world = useOracleWorld('vigil-oracle-', process.env.DEBUG_ORACLE_KEYS ? { config: { recording: { keystrokes: true } } } : {});

  const unfold = (s: string) => s.replace(/\\\n/g, '');

  /** Stock `ssh -tt` fed from a pipe, step by step; resolves with the session's events once it ended. */
  async function session(args: string[], steps: PtyStep[], extra: string[] = ['-tt']): Promise<{ events: AuditEvent[]; stdout: string }> {
    const { mark, stdout } = await typeIntoSsh(world.w, world.alice, steps, { args, sshOptions: extra });
    return { events: await sessionEvents(mark), stdout };
  }

  /** The events of the first session that started after event number `mark`, once it ended. */
  async function sessionEvents(mark: number): Promise<AuditEvent[]> {
    const start = await sessionEndedAfter(world.w, mark);
    const events = () => world.w.gw.events.filter((e) => e.session_id === start.session_id);
    // A command the tracker still reports late would show up after session.end: give it a moment, then
    // check that session.end came last (it waits for the channels' last events).
    const reported = () => events().filter((e) => e.type === 'ssh.command' && !e.details.hidden).map((e) => unfold(String(e.details.command)));
    await waitFor(() => world.oracle.commands().every((c) => reported().includes(unfold(c))), 5_000, 'commands').catch(() => undefined);
    expect(events().at(-1)?.type).toBe('session.end');
    return events();
  }

  /** The `i` events of a recording, joined. */
  async function recordedInput(id: string, expectedLength: number): Promise<string> {
    const file = world.w.gw.gw.services.recordings.pathOf(id);
    const input = () => fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').slice(1).map((l) => JSON.parse(l) as [number, string, string]).filter((l) => l[1] === 'i').map((l) => l[2]).join('') : '';
    await waitFor(() => input().length >= expectedLength, 10_000, 'recording flushed');
    return input();
  }

  /** Every line the shell logged is an `ssh.command` with that text; prints the counts. */
  function matchOracle(workload: string, events: AuditEvent[], noExtra = true): string[] {
    const logged = world.oracle.commands();
    // A line the shell never echoed before the channel closed and that may have answered a password
    // prompt is an `ssh.command` without text (hidden, unconfirmed): nothing to compare.
    const reported = events.filter((e) => e.type === 'ssh.command' && !e.details.hidden).map((e) => String(e.details.command));
    const missing = logged.filter((c) => !reported.some((r) => unfold(r) === unfold(c)));
    if (process.env.DEBUG_ORACLE) console.log(JSON.stringify({ logged, reported, recording: events.find((e) => e.type === 'ssh.command')?.details.recording }, null, 1));
    // DEBUG_ORACLE_KEYS=1 (with recording.keystrokes on) keeps a failing session's recording, input and output in order, for replay.
    if (process.env.DEBUG_ORACLE_KEYS && logged.some((c) => !reported.some((r) => unfold(r) === unfold(c)))) {
      const rec = events.find((e) => e.type === 'ssh.command')?.details.recording as string;
      fs.copyFileSync(world.w.gw.gw.services.recordings.pathOf(rec), `/work/wt/sshshell/.scratch/fail-${Date.now()}.cast`);
    }
    console.log(`${workload}: shell ran ${logged.length} command lines, ssh.command events ${reported.length}, missing ${missing.length}`);
    expect(logged.length).toBeGreaterThan(0);
    expect(missing).toEqual([]);
    // Nor anything the shell did not run (banner text, output, a password).
    if (noExtra) expect(reported.filter((r) => !logged.some((c) => unfold(r) === unfold(c)))).toEqual([]);
    return reported;
  }

  it('typeahead: lines typed before the first prompt are the commands that ran, not banner text', async () => {
    world.oracle.reset();
    const { events } = await session([], [
      { send: 'echo ahead-one\rcd /tmp && echo ahead-two\r' },
      { until: 'ahead-two\r\n' },
      { until: world.oracle.prompt },
      { send: 'echo after-prompt\r' },
      // The echoed line first, then the command's output: 'after-prompt\r\n' alone matches the echo.
      { until: 'echo after-prompt' },
      { until: /\nafter-prompt\r\n|\rafter-prompt\r\n/ },
      { until: world.oracle.prompt },
      { send: 'exit\r' },
    ]);
    const reported = matchOracle('typeahead', events);
    expect(reported).toEqual(['echo ahead-one', 'cd /tmp && echo ahead-two', 'echo after-prompt', 'exit']);
  });

  it('pasted script: several lines in one write, before and at the prompt', async () => {
    world.oracle.reset();
    const script = ['echo paste-1', 'for i in 1 2; do echo loop-$i; done', 'echo paste-2 | tr a-z A-Z', 'echo paste-3'].join('\r') + '\r';
    const { events } = await session([], [
      { send: script },
      // The output line, not the tty's echo of the typed-ahead line ("echo paste-3").
      { until: /[\r\n]paste-3\r\n/ },
      { until: world.oracle.prompt },
      { send: script.replace(/paste/g, 'again') },
      { until: /[\r\n]again-3\r\n/ },
      { send: 'exit\r' },
    ]);
    const reported = matchOracle('pasted script', events);
    expect(reported.filter((c) => c.includes('paste'))).toEqual(['echo paste-1', 'echo paste-2 | tr a-z A-Z', 'echo paste-3']);
    expect(reported.filter((c) => c.includes('again'))).toEqual(['echo again-1', 'echo again-2 | tr a-z A-Z', 'echo again-3']);
  });

  it('a long paste: 200 lines in one write at the prompt, each one a command', async () => {
    world.oracle.reset();
    const lines = Array.from({ length: 200 }, (_, i) => `echo long-paste-${i}`);
    const { events } = await session([], [
      { until: world.oracle.prompt },
      { send: lines.join('\r') + '\r' },
      { until: 'long-paste-199\r\n' },
      { send: 'exit\r' },
    ]);
    const reported = matchOracle('long paste', events);
    expect(reported.filter((c) => c.includes('long-paste'))).toEqual(lines);
  });

  it('the client vanishes after typing a line nothing echoed: the line is on record as unconfirmed, its text withheld', async () => {
    world.oracle.reset();
    const mark = world.w.gw.events.length;
    const c = spawnClient('ssh', [...world.w.opts(world.alice, ['-tt']), 'web1@127.0.0.1']);
    try {
      await waitFor(() => c.stdout().includes(world.oracle.prompt), 15_000, 'prompt');
      // The tty does not echo while sleep runs: what is typed then may be that program's input (a password).
      // Typed only once echo is off (`echo-off` printed after stty ran): typed any earlier, the tty would
      // still echo it, and a line shown on the screen is recorded as shown.
      c.child.stdin!.write('stty -echo; echo echo-off; sleep 5; stty echo\r');
      await waitFor(() => c.stdout().includes('echo-off\r\n'), 15_000, 'echo off');
      c.child.stdin!.write('echo unconfirmed-s3cret\r');
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      c.child.kill('SIGKILL');
    }
    const events = await sessionEvents(mark);
    const cmds = events.filter((e) => e.type === 'ssh.command');
    expect(cmds.map((e) => [e.outcome, e.details.command, e.details.unconfirmed, e.details.hidden])).toEqual([
      ['success', 'stty -echo; echo echo-off; sleep 5; stty echo', undefined, undefined],
      ['unknown', undefined, true, true],
    ]);
    expect(JSON.stringify(events)).not.toContain('unconfirmed-s3cret');
  });

  it('echo off: commands typed after `stty -echo` are reported; what is typed at password prompts is not stored', async () => {
    world.oracle.reset();
    const secrets = ['s3cret-at-read-p', 'tok3n-on-a-bare-line', 'mysql-pw-never-stored', 'passphrase-never-stored'];
    const { events } = await session([], [
      { until: world.oracle.prompt },
      { send: 'stty -echo\r' },
      { until: world.oracle.prompt },
      { send: 'echo hidden-one\r' },
      { until: 'hidden-one\r\n' },
      { until: world.oracle.prompt },
      // Typed key by key, with a correction, as a person would.
      ...[...'cd /tmp; echo hiddem\x7fn-two\r'].flatMap((k) => [{ send: k }, { pause: 5 }]),
      { until: 'hidden-two\r\n' },
      { until: world.oracle.prompt },
      { send: 'read -s -p "Password: " pw; echo len=${#pw}\r' },
      { until: 'Password: ' },
      { send: `${secrets[0]}\r` },
      { until: 'len=16' },
      { until: world.oracle.prompt },
      { send: 'echo enter the token; read -s tok; echo tlen=${#tok}\r' },
      { until: 'enter the token\r\n' },
      { send: `${secrets[1]}\r` },
      { until: 'tlen=20' },
      { until: world.oracle.prompt },
      { send: 'mariadb -h 127.0.0.1 -P 1 -u nobody -p; echo mysql-done\r' },
      { until: 'Enter password: ' },
      { send: `${secrets[2]}\r` },
      { until: 'mysql-done' },
      { until: world.oracle.prompt },
      { send: 'read -s -p "Enter passphrase for key \'/root/.ssh/id_ed25519\': " pp; echo plen=${#pp}\r' },
      { until: 'passphrase for key' },
      { send: `${secrets[3]}\r` },
      { until: 'plen=23' },
      { until: world.oracle.prompt },
      // A burst: the second line is typed before the shell read the first.
      { send: 'echo burst-one\recho burst-two\r' },
      { until: 'burst-two\r\n' },
      { until: world.oracle.prompt },
      { send: 'stty echo\r' },
      { until: world.oracle.prompt },
      { send: 'echo visible-again\r' },
      { until: 'visible-again\r\n' },
      { send: 'exit\r' },
    ]);
    const reported = matchOracle('echo off', events);
    const hidden = events.filter((e) => e.type === 'ssh.command' && e.details.echo === false).map((e) => e.details.command);
    // Everything typed at the shell prompt while echo was off, and nothing typed at the password prompts.
    expect(hidden).toEqual(reported.slice(1, -2));
    expect(hidden).toEqual(expect.arrayContaining(['echo hidden-one', 'cd /tmp; echo hidden-two', 'echo burst-one', 'echo burst-two', 'stty echo']));
    expect(reported).toContain('echo visible-again');
    // No secret in any event of the session, nor in its recording.
    const text = JSON.stringify(events);
    for (const s of secrets) expect(text).not.toContain(s);
    const rec = events.find((e) => e.type === 'ssh.command')!.details.recording as string;
    const file = world.w.gw.gw.services.recordings.pathOf(rec);
    await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('visible-again'), 10_000, 'recording flushed');
    const cast = fs.readFileSync(file, 'utf8');
    // (DEBUG_ORACLE_KEYS records keystrokes, secrets included, on purpose.)
    if (!process.env.DEBUG_ORACLE_KEYS) for (const s of secrets) expect(cast).not.toContain(s);
  });

  it('typed ahead, unechoed, into a program reading a password: never reported; the line after it is', async () => {
    world.oracle.reset();
    const { events } = await session([], [
      { until: world.oracle.prompt },
      { send: 'stty -echo; sleep 1; read -r pw; stty echo; echo got-${#pw}\r' },
      { pause: 300 },
      // Typed while `sleep` runs, with echo off: `read` takes the first line, the shell the second.
      { send: 'hunter2-typed-ahead\recho after-secret\r' },
      { until: 'after-secret\r\n' },
      { send: 'exit\r' },
    ]);
    const reported = matchOracle('typed ahead into a password read', events);
    expect(reported).toEqual(['stty -echo; sleep 1; read -r pw; stty echo; echo got-${#pw}', 'echo after-secret', 'exit']);
    expect(JSON.stringify(events)).not.toContain('hunter2');
  });

  it('a shell run as the command on a pty (ssh -tt host bash -i) is tracked like a login shell', async () => {
    world.oracle.reset();
    const { events } = await session(['bash', '--noprofile', '--rcfile', world.oracle.rcfile, '-i'], [
      { until: world.oracle.prompt },
      { send: 'echo in-exec-shell\r' },
      { until: 'in-exec-shell\r\n' },
      { send: 'exit\r' },
    ]);
    const reported = matchOracle('pty exec of bash -i', events);
    expect(reported).toEqual(['echo in-exec-shell', 'exit']);
  });

  it('a pty command that starts a shell itself (ssh -tt host su -): what is typed in it is tracked too', async () => {
    const { events } = await session(['su', '-'], [
      { until: /[$#] $/ },
      { send: 'echo typed-under-su\r' },
      { until: 'typed-under-su\r\n' },
      { send: 'exit\r' },
    ]);
    const cmds = await waitFor(() => {
      const c = world.w.gw.events.filter((e) => e.type === 'ssh.command' && e.session_id === events[0]!.session_id).map((e) => e.details.command);
      return c.includes('exit') ? c : undefined;
    }, 5_000, 'ssh.command events');
    expect(cmds).toEqual(['echo typed-under-su', 'exit']);
  });

  /** A script with the shapes a shell reads over several lines, and a line that is data, not a command. */
  const SCRIPT = [
    '#!/bin/bash',
    'echo script-start',
    'for i in 1 2; do',
    '  echo "loop $i"',
    'done',
    '# a comment line',
    'cat <<EOF',
    'heredoc line, if not a keyword',
    'EOF',
    'echo continued \\',
    '  line',
    "echo 'quoted",
    "newline'",
    'if [ -d /tmp ]; then',
    '  echo tmp-exists',
    'fi',
    'read -r consumed',
    'this line is data for read',
    'echo "read: $consumed"',
    'false || echo fallback',
    'echo script-end',
    '',
  ].join('\n');

  for (const [workload, args] of [['no pty: ssh host < script', []], ['no pty: ssh host bash -s < script', ['bash', '-s']]] as const) {
    it(`${workload}: one ssh.command (source stdin) per command the shell ran, and the script in the recording`, async () => {
      world.oracle.reset();
      const mark = world.w.gw.events.length;
      const r = await world.w.run('ssh', [...world.w.opts(world.alice, ['-T']), 'web1@127.0.0.1', ...args], SCRIPT);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('read: this line is data for read');
      expect(r.stdout).toContain('script-end');
      const events = await sessionEvents(mark);
      const reported = matchOracle(workload, events, false);
      // The one line bash did not run itself: `read` consumed it. vigil cannot know that; it reports it.
      expect(reported.filter((c) => !world.oracle.commands().some((o) => unfold(o) === unfold(c)))).toEqual(['this line is data for read']);
      const cmds = events.filter((e) => e.type === 'ssh.command');
      expect(cmds.every((e) => e.details.source === 'stdin')).toBe(true);
      expect(await recordedInput(cmds[0]!.details.recording as string, SCRIPT.length)).toBe(SCRIPT);
    });
  }
});

describe('certificate force-command', () => {
  let w: SshWorld;
  beforeAll(async () => {
    // The target must accept the variable, as with OpenSSH's own AcceptEnv for any client-set variable.
    w = await startWorld({ sshd: { overrides: { AcceptEnv: 'LANG LC_* VIGIL_* SSH_ORIGINAL_COMMAND' } } });
  }, 30_000);
  afterAll(() => w?.stop());

  const FORCED = 'echo "forced ran; original=[${SSH_ORIGINAL_COMMAND-unset}]"';

  it('the event carries the forced and the requested command; the target sees SSH_ORIGINAL_COMMAND as under sshd', async () => {
    const forced = await w.issue({ forceCommand: FORCED });
    const r = await w.run('ssh', [...w.opts(forced), 'web1@127.0.0.1', 'rm -rf /tmp/asked-for; echo asked'], undefined);
    expect(r.stdout).toBe('forced ran; original=[rm -rf /tmp/asked-for; echo asked]\n');
    const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.actor.cert_serial === forced.creds.serial);
    expect(ev.details).toMatchObject({ command: FORCED, force_command: true, requested: 'exec', requested_command: 'rm -rf /tmp/asked-for; echo asked' });
  });

  it('a shell asked for under a force-command: requested is "shell", and SSH_ORIGINAL_COMMAND stays unset', async () => {
    const forced = await w.issue({ forceCommand: FORCED });
    const r = await w.run('ssh', [...w.opts(forced, ['-T']), 'web1@127.0.0.1'], '');
    expect(r.stdout).toBe('forced ran; original=[unset]\n');
    const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.actor.cert_serial === forced.creds.serial);
    expect(ev.details).toMatchObject({ command: FORCED, force_command: true, requested: 'shell' });
    expect(ev.details.requested_command).toBeUndefined();
  });
});
