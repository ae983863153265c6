import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/events/envelope.ts';
import { waitFor } from '../support/tmp.ts';
import { sessionEndedAfter, typeIntoSsh, useOracleWorld, type PtyStep } from './pty-driver.ts';

/**
 * Adversarial typing through a stock `ssh -tt`, held to the target's own record (oracle-shell: bash logs
 * every command line it runs): every line it ran is an `ssh.command` with that text, or one marked
 * inexact/hidden; never a different text given as certain.
 */
describe('pty ssh.command records under adversarial typing, against the oracle shell', () => {
  const world = useOracleWorld('vigil-pty-records-');
  const unfold = (s: string) => s.replace(/\\\n/g, '').trim();

  const P = () => world.oracle.prompt;

  /**
   * A shell session from its first prompt: `steps`, then `exit`; resolves with its events. The oracle's log
   * starts with it.
   */
  async function shellSession(steps: PtyStep[]): Promise<AuditEvent[]> {
    world.oracle.reset();
    const { w, alice } = world;
    const { mark } = await typeIntoSsh(w, alice, [{ until: P() }, ...steps, { send: 'exit\r' }]);
    const start = await sessionEndedAfter(w, mark);
    // Every record of the session's lines precedes its session.end (test/ssh/ssh-review2-session-end-order.test.ts).
    return w.gw.events.filter((e) => e.session_id === start.session_id);
  }

  /** Each of `keys` sent, then the next prompt awaited. */
  const typedAtPrompt = (...keys: string[]): PtyStep[] => keys.flatMap((send) => [{ send }, { until: P() }]);

  /** Certain records (not hidden, not inexact) that are not what the shell ran, and lines it ran with no record. */
  function compare(events: AuditEvent[]): { logged: string[]; reported: AuditEvent['details'][]; wrong: string[]; missing: string[] } {
    const logged = world.oracle.commands().map(unfold);
    const cmds = events.filter((e) => e.type === 'ssh.command').map((e) => e.details);
    const certain = cmds.filter((d) => !d.hidden && d.exact !== false && !d.unconfirmed).map((d) => unfold(String(d.command)));
    // A bracketed paste of several complete lines is one record of the lines the shell ran one by one.
    const wrong = certain.filter((c) => !logged.includes(c) && !c.split('\n').every((l) => logged.includes(l.trim())));
    const missing = logged.filter((l) => !cmds.some((d) => d.exact === false || unfold(String(d.command)) === l || String(d.command).split('\n').includes(l)));
    console.log(JSON.stringify({ logged, reported: cmds.map((d) => [d.command, d.exact, d.hidden, d.echo]) }));
    return { logged, reported: cmds, wrong, missing };
  }

  /** The records agree with what the shell ran: no certain record of a line it did not run, no line it ran without a record. */
  function expectAgreement(events: AuditEvent[]): ReturnType<typeof compare> {
    const r = compare(events);
    expect(r.wrong).toEqual([]);
    expect(r.missing).toEqual([]);
    return r;
  }

  it('readline editing: Ctrl-W, Ctrl-U, Ctrl-K, Alt-B/F, Ctrl-A, Ctrl-T, Ctrl-Y', async () => {
    const events = await shellSession([
      ...typedAtPrompt(
        'echo aaa bbb\x17ccc\r',
        'echo zzz\x15echo uuu\r',
        'echo kkk tail\x1bb\x0b\r',
        'cho aaa\x01e\r',
        'echo ab\x14\r',
        'echo yank-me\x17\x19\x19\r',
        'echo one two\x1bb\x1bb\x1bfX\r',
      ),
    ]);
    expectAgreement(events);
  });

  it('history: Up, Ctrl-R, !!, !$', async () => {
    const events = await shellSession([
      ...typedAtPrompt(
        'echo hist-first arg1\r',
        '\x1b[A\r',
        '\x12hist-f\r',
        '!!\r',
        'echo !$\r',
      ),
    ]);
    expectAgreement(events);
  });

  it('multi-line: bracketed paste, backslash, open quote, heredoc', async () => {
    const events = await shellSession([
      { send: '\x1b[200~echo p1\recho p2\x1b[201~\r' }, { until: P() },
      { send: 'echo cont \\\r' }, { until: '> ' }, { send: 'inued\r' }, { until: P() },
      { send: "echo 'open\r" }, { until: '> ' }, { send: "quote'\r" }, { until: P() },
      { send: 'cat <<EOF\r' }, { until: '> ' }, { send: 'hdoc-body\r' }, { until: '> ' }, { send: 'EOF\r' }, { until: P() },
      // Given up at the continuation prompt: nothing ran.
      { send: "echo 'never-closed\r" }, { until: '> ' }, { send: 'rm -rf /x\r' }, { until: '> ' }, { send: '\x03' }, { until: P() },
      { send: 'echo after-abandon\r' }, { until: P() },
      // Ctrl-D at the continuation prompt: bash runs the here-document cut short; vigil cannot tell.
      { send: 'cat <<END\r' }, { until: '> ' }, { send: 'last-body\r' }, { until: '> ' }, { send: '\x04' }, { until: P() },
    ]);
    expectAgreement(events);
    const cmds = events.filter((e) => e.type === 'ssh.command').map((e) => [e.outcome, e.details.command, e.details.prompt]);
    expect(cmds).toEqual([
      ['success', 'echo p1\necho p2', 'oracle$'],
      ['success', 'echo cont \\\ninued', 'oracle$'],
      ['success', "echo 'open\nquote'", 'oracle$'],
      ['success', 'cat <<EOF\nhdoc-body\nEOF', 'oracle$'],
      ['unknown', "echo 'never-closed\nrm -rf /x", 'oracle$'],
      ['success', 'echo after-abandon', 'oracle$'],
      ['unknown', 'cat <<END\nlast-body', 'oracle$'],
      ['success', 'exit', 'oracle$'],
    ]);
  });

  it('Tab completion, Ctrl-C on a partial line', async () => {
    const events = await shellSession([
      { send: 'ech\t' }, { until: 'echo ' }, { send: 'tab-done\r' }, { until: P() },
      { send: 'rm -rf /nothing-ran' }, { until: 'nothing-ran' }, { send: '\x03' }, { until: P() },
      { send: 'echo after-cancel\r' }, { until: P() },
    ]);
    const r = expectAgreement(events);
    expect(r.reported.map((d) => d.command)).not.toContain('rm -rf /nothing-ran');
  });

  it('Ctrl-D ending input (cat, a here-document): the next line is the command typed at the next prompt', async () => {
    const events = await shellSession([
      { send: 'cat\r' }, { until: 'cat\r\n' }, { send: '\x04' }, { until: P() },
      { send: 'echo after-eof\r' }, { until: P() },
      { send: 'cat <<END\r' }, { until: '> ' }, { send: '\x04' }, { until: P() },
      { send: 'echo after-heredoc-eof\r' }, { until: P() },
    ]);
    expectAgreement(events);
    const cmds = events.filter((e) => e.type === 'ssh.command').map((e) => [e.outcome, e.details.command, e.details.prompt]);
    expect(cmds).toEqual([
      ['success', 'cat', 'oracle$'],
      ['success', 'echo after-eof', 'oracle$'],
      ['unknown', 'cat <<END', 'oracle$'],
      ['success', 'echo after-heredoc-eof', 'oracle$'],
      ['success', 'exit', 'oracle$'],
    ]);
  });

  it('a line typed ahead while a command runs, then discarded with Ctrl-C: the shell never ran it', async () => {
    const events = await shellSession([
      // Waits for the output of the command line, not its echo: the shell has given the tty back (echo on).
      { send: 'echo sleeping; sleep 5\r' }, { until: 'sleeping\r\n' },
      // The tty echoes it and queues it for the shell; Ctrl-C interrupts sleep and flushes that queue.
      { send: 'echo typed-ahead-discarded\r' }, { until: 'echo typed-ahead-discarded\r\n' },
      { send: '\x03' }, { until: P() },
      { send: 'echo after-discard\r' }, { until: /after-discard\r\n(\x1b\[\?2004h)?oracle\$ / },
    ]);
    const r = compare(events);
    expect(r.logged).toEqual(['echo sleeping; sleep 5', 'echo after-discard', 'exit']);
    expect(r.wrong).toEqual([]);
    expect(r.missing).toEqual([]);
    // Its Enter reached the tty, so it is recorded — as not known to have run.
    const cmds = events.filter((e) => e.type === 'ssh.command').map((e) => [e.outcome, e.details.command, e.details.unconfirmed ?? false]);
    expect(cmds).toEqual([
      ['success', 'echo sleeping; sleep 5', false],
      ['unknown', 'echo typed-ahead-discarded', true],
      ['success', 'echo after-discard', false],
      ['success', 'exit', false],
    ]);
  });

  it('a line typed ahead while a command runs is recorded once the shell reads it', async () => {
    const events = await shellSession([
      { send: 'echo sleeping; sleep 0.5\r' }, { until: 'sleeping\r\n' },
      { send: 'echo typed-ahead-ran\r' }, { until: /\rtyped-ahead-ran\r\n/ }, // its output, not the tty's echo of it
    ]);
    const r = compare(events);
    expect(r.logged).toEqual(['echo sleeping; sleep 0.5', 'echo typed-ahead-ran', 'exit']);
    const cmds = events.filter((e) => e.type === 'ssh.command').map((e) => [e.outcome, e.details.command]);
    expect(cmds).toEqual([
      ['success', 'echo sleeping; sleep 0.5'],
      ['success', 'echo typed-ahead-ran'],
      ['success', 'exit'],
    ]);
  });

  it('input split at every byte', async () => {
    const line = 'echo split \x1b[D\x1b[Cx\x17yy\x01\x1bf end\r';
    const events = await shellSession([
      // Each key its own chunk (the pause paces the sending; nothing waits on it).
      ...[...line].flatMap((k) => [{ send: k }, { pause: 3 }]),
      // Not just the prompt: Ctrl-A makes readline redraw the line from column 0, prompt included, so a
      // bare prompt match came early and sent `exit` typed ahead of a line the shell had not read yet.
      { until: /end split yy\r\n(\x1b\[\?2004h)?oracle\$ / },
    ]);
    expectAgreement(events);
  });
});
