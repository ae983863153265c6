import { describe, expect, it } from 'vitest';
import { CommandTracker, type TerminalCommand } from '../../proxies/ssh/terminal/index.ts';
import { InputClassifier, TypedLine } from '../../proxies/ssh/terminal/input.ts';

const ON = '\x1b[?2004h';
const OFF = '\x1b[?2004l';

/** A tracker fed scripted output, as a readline shell would write it. */
function tracker() {
  const commands: TerminalCommand[] = [];
  const t = new CommandTracker({ cols: 80, rows: 24, onCommand: (c) => commands.push(c) });
  return {
    commands,
    out: (s: string) => t.output(Buffer.from(s)),
    type: (s: string) => t.input(Buffer.from(s)),
    flush: () => t.flush(),
    finish: () => t.finish(),
  };
}

describe('CommandTracker: lines typed ahead', () => {
  it('a typed-ahead line never shown (a password read raw) does not hold back a later one', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('sudo ls\rhunter2\recho next\r');
    t.out(`sudo ls\r\n${OFF}\r`);
    t.out('[sudo] password for alice: ');
    t.out('\r\nfile-a  file-b\r\n');
    t.out(`${ON}p$ echo next\r\n${OFF}\rnext\r\n${ON}p$ `);
    await t.flush();
    expect(t.commands.map((c) => c.command)).toEqual(['sudo ls', 'echo next']);
  });

  it('lines the tty echoes before the shell redisplays an earlier one are all reported', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('sleep 1\recho one\recho two\r');
    t.out(`sleep 1\r\n${OFF}\r`);
    // "echo two" arrived while sleep ran: the tty echoed it; "echo one" was already queued, unechoed.
    t.out('echo two\r\n');
    t.out(`${ON}p$ echo one\r\n${OFF}\rone\r\n${ON}p$ echo two\r\n${OFF}\rtwo\r\n${ON}p$ `);
    await t.flush();
    expect(t.commands.map((c) => c.command).sort()).toEqual(['echo one', 'echo two', 'sleep 1']);
  });

  it('a long paste whose tail the tty echoes while the first command runs: every line is reported', async () => {
    const t = tracker();
    const lines = Array.from({ length: 100 }, (_, i) => `echo n${i}`);
    t.out(`${ON}p$ `);
    t.type(lines.join('\r') + '\r');
    t.out(`${lines[0]}\r\n${OFF}\r`);
    // The second half arrived while `echo n0` ran: the tty echoed it, 70 lines, before the shell read n1.
    t.out(lines.slice(30).map((l) => `${l}\r\n`).join(''));
    t.out('n0\r\n');
    for (const l of lines.slice(1)) t.out(`${ON}p$ ${l}\r\n${OFF}\r${l.slice(5)}\r\n`);
    t.out(`${ON}p$ `);
    await t.flush();
    expect(new Set(t.commands.map((c) => c.command))).toEqual(new Set(lines));
  });

  it('a line typed before any prompt is found after the banner, not taken from it', async () => {
    const t = tracker();
    t.type('uptime\r');
    t.out('Welcome to db1\r\nLast login: Mon from 10.0.0.1\r\n');
    t.out(`${ON}db1$ uptime\r\n${OFF}\r 10:00 up 1 day\r\n${ON}db1$ `);
    await t.flush();
    expect(t.commands).toEqual([{ command: 'uptime', source: 'terminal', prompt: 'db1$' }]);
  });

  it('a line typed after the output, before the next prompt is drawn, is the command the prompt then shows', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('echo hi\r');
    t.out(`echo hi\r\n${OFF}\rhi\r\n`);
    t.type('exit\r');
    t.out(`${ON}p$ exit\r\n${OFF}\rexit\r\n`);
    await t.flush();
    expect(t.commands).toEqual([
      { command: 'echo hi', source: 'terminal', prompt: 'p$' },
      { command: 'exit', source: 'terminal', prompt: 'p$' },
    ]);
  });

  it('a line typed after readline turned bracketed paste on but before it drew the prompt: the command, not the prompt with it', async () => {
    // Seen under load: the prompt's mode switch ends one chunk, the prompt text starts the next.
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('echo hi\r');
    t.out(`echo hi\r\n${OFF}\rhi\r\n${ON}`);
    t.type('exit\r');
    t.out(`p$ exit\r\n${OFF}\r`);
    t.out('exit\r\n');
    await t.flush();
    expect(t.commands).toEqual([
      { command: 'echo hi', source: 'terminal', prompt: 'p$' },
      { command: 'exit', source: 'terminal', prompt: 'p$' },
    ]);
  });

  it('an answer typed before a password prompt was drawn, then echoed by the program, is not a command', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('./get-token\r');
    t.out(`./get-token\r\n${OFF}\r`);
    t.type('s3cret-token\r');
    t.out('Enter token: s3cret-token\r\nok\r\n');
    await t.flush();
    expect(t.commands).toEqual([{ command: './get-token', source: 'terminal', prompt: 'p$' }]);
  });

  it('the same with Tab completion (keys not an exact rebuild): the prompt seen before is taken off the line the shell shows', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('echo hi\r');
    t.out(`echo hi\r\n${OFF}\rhi\r\n${ON}`);
    t.type('hist\t\r');
    t.out(`p$ history\r\n${OFF}\r    1  echo hi\r\n`);
    await t.flush();
    // Read from the screen as the shell showed it: no `exact: false` (that marks a rebuild from keys).
    expect(t.commands).toEqual([
      { command: 'echo hi', source: 'terminal', prompt: 'p$' },
      { command: 'history', source: 'terminal', prompt: 'p$' },
    ]);
  });

  it('echo off: a line readline accepted without showing it is reported from the keys; a password prompt answer is not', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('echo hi\r');
    t.out(`${OFF}\r\r\nhi\r\n${ON}p$ `);
    t.type('su -\r');
    t.out(`${OFF}\r\r\nPassword: `);
    t.type('s3cret\r');
    t.out('\r\nsu: Authentication failure\r\n');
    await t.flush();
    expect(t.commands).toEqual([
      { command: 'echo hi', source: 'terminal', prompt: 'p$', echo: false },
      { command: 'su -', source: 'terminal', prompt: 'p$', echo: false },
    ]);
  });
});

describe('CommandTracker: echo off', () => {
  it('keys a rebuild cannot follow (arrows) are reported with exact: false', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('ls\x1b[D\x1b[C -l\r');
    t.out(`${OFF}\r\r\nfile\r\n${ON}p$ `);
    await t.flush();
    expect(t.commands).toEqual([{ command: 'ls -l', source: 'terminal', prompt: 'p$', echo: false, exact: false }]);
  });

  it('a shell without a line editor (dash): echo-off lines count as commands at the prompt echoed commands were typed at', async () => {
    const t = tracker();
    t.out('$ ');
    t.type('stty -echo\r');
    t.out('stty -echo\r\n$ ');
    t.type('echo b\r');
    t.out('b\r\n$ ');
    t.type('su -c id deploy\r');
    t.out('Password: ');
    t.type('dash-secret\r');
    // getpass (su, sudo, ssh) ends the prompt's line itself.
    t.out('\r\nsu: Authentication failure\r\n$ ');
    await t.flush();
    expect(t.commands.map((c) => [c.command, c.echo])).toEqual([
      ['stty -echo', undefined],
      ['echo b', false],
      ['su -c id deploy', false],
    ]);
    expect(JSON.stringify(t.commands)).not.toContain('dash-secret');
  });
});

describe('InputClassifier and TypedLine', () => {
  it('rebuild a line from keys: erase, kill-word, kill-line; arrows and Tab make it inexact', () => {
    const c = new InputClassifier();
    const line = new TypedLine();
    for (const e of c.classify(Buffer.from('echo helo\x7f\x7fllo wrld\x17world'))) if (e.type === 'keys') line.apply(e.ops);
    expect(line).toMatchObject({ text: 'echo hello world', exact: true });
    for (const e of c.classify(Buffer.from('\x1b[D\t'))) if (e.type === 'keys') line.apply(e.ops);
    expect(line.exact).toBe(false);
    const l2 = new TypedLine();
    for (const e of c.classify(Buffer.from('junk\x15ls'))) if (e.type === 'keys') l2.apply(e.ops);
    expect(l2.text).toBe('ls');
  });

  it('a rebuild is bounded: past 64 KiB it keeps the start and is no longer exact', () => {
    const line = new TypedLine();
    line.apply([{ text: 'x'.repeat(100_000) }]);
    expect(line.text.length).toBe(64 * 1024);
    expect(line.exact).toBe(false);
  });

  it('a bracketed paste keeps its newlines as text; escape sequences and split UTF-8 are not text', () => {
    const c = new InputClassifier();
    const events = [...c.classify(Buffer.concat([Buffer.from('\x1b[200~a\rb\x1b[201~'), Buffer.from([0xc3])])), ...c.classify(Buffer.from([0xa9, 0x0d]))];
    const line = new TypedLine();
    for (const e of events) if (e.type === 'keys') line.apply(e.ops);
    expect(line.text).toBe('a\nbé');
    expect(events.at(-1)).toEqual({ type: 'enter', at: 1 });
  });
});

describe('CommandTracker: the channel closes before the echo', () => {
  it('a line the shell never echoed back is reported unconfirmed, from the keys', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('echo hi\r');
    t.out(`echo hi\r\n${OFF}\rhi\r\n${ON}p$ `);
    t.type('rm -rf /tmp/x\r');
    await t.finish();
    expect(t.commands).toEqual([
      { command: 'echo hi', source: 'terminal', prompt: 'p$' },
      { command: 'rm -rf /tmp/x', source: 'terminal', prompt: 'p$', unconfirmed: true },
    ]);
  });

  it('keys a rebuild cannot follow are reported unconfirmed and inexact', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('rm -rf /tm\tx\r');
    await t.finish();
    expect(t.commands).toEqual([{ command: 'rm -rf /tmx', source: 'terminal', prompt: 'p$', unconfirmed: true, exact: false }]);
  });

  it('a line that may answer a password prompt (typed ahead, or at a secret prompt) is reported without its text', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('sudo ls\rhunter2\r');
    t.out(`sudo ls\r\n${OFF}\r[sudo] password for alice: `);
    await t.finish();
    expect(t.commands).toEqual([
      { command: 'sudo ls', source: 'terminal', prompt: 'p$' },
      { command: '', source: 'terminal', prompt: 'p$', unconfirmed: true, hidden: true },
    ]);
    expect(JSON.stringify(t.commands)).not.toContain('hunter2');
  });

  it('nothing is reported for lines the shell did echo, nor for a line without an Enter', async () => {
    const t = tracker();
    t.out(`${ON}p$ `);
    t.type('echo hi\r');
    t.out(`echo hi\r\n${OFF}\rhi\r\n${ON}p$ `);
    t.type('half-typed');
    await t.finish();
    expect(t.commands).toEqual([{ command: 'echo hi', source: 'terminal', prompt: 'p$' }]);
  });
});
