import { SftpObserver, type SftpIntent, type SftpOperation } from './sftp/index.ts';
import { CommandTracker, ShellInputSplitter, type SubmittedLine } from './terminal/index.ts';
import { ScpObserver, type ScpCommand, type ScpTransfer } from './scp/index.ts';
import type { ChannelHost, ChannelObserver, PtyInfo, SftpHooks, TerminalHooks } from './host.ts';
import { refusalMessage, type GuardDecision, type SessionGuardrails } from '../../src/guardrails/index.ts';

/** SFTP operation → `ssh.sftp` event details (snake_case like every event; paths included). */
export function sftpEventDetails(op: SftpOperation, channel: number): Record<string, unknown> {
  const { outcome, status, ...rest } = op;
  const d: Record<string, unknown> = { channel, result: outcome };
  for (const [k, v] of Object.entries(rest)) d[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  if (status) d.status = status;
  return d;
}

/** SFTP intent → `ssh.sftp.start` details (snake_case). */
export function sftpIntentDetails(i: SftpIntent, channel: number): Record<string, unknown> {
  const d: Record<string, unknown> = { channel };
  for (const [k, v] of Object.entries(i)) d[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  return d;
}

/**
 * Feed an sftp subsystem channel to the SFTP observer; one `ssh.sftp` event per operation. A fatal
 * observation problem (the stream cannot be decoded) calls `undecodable` before the bytes are relayed.
 */
export function observeSftp(host: ChannelHost, index: number, hooks: SftpHooks): ChannelObserver {
  const { undecodable } = hooks;
  const obs = new SftpObserver({
    onIntent: hooks.intent ? (i) => hooks.intent!(sftpIntentDetails(i, index)) : undefined,
    onOperation: (op) => host.emit('ssh.sftp', op.outcome === 'ok' ? 'success' : op.outcome === 'incomplete' ? 'unknown' : 'failure', sftpEventDetails(op, index)),
    onError: (err) => {
      host.log.warn({ err: err.message, code: err.code, channel: index }, 'sftp observation problem');
      if (err.fatal) undecodable(`${err.code}: ${err.message}`);
    },
  });
  return {
    clientData: (c) => obs.clientData(c),
    serverData: (c) => obs.serverData(c),
    close: () => obs.end(),
  };
}

/**
 * scp transfer → `ssh.scp` event details (the path as sent, joined from the directory stack). An upload
 * also names its `destination`: the `scp -t` target the client wrote to (the file is that path, or
 * `destination/path` when the target is an existing directory; only the target's scp knows which).
 */
export function scpEventDetails(t: ScpTransfer, channel: number, command?: ScpCommand): Record<string, unknown> {
  const destination = t.direction === 'upload' && command?.paths[0] !== undefined ? { destination: command.paths[0] } : {};
  if (t.op === 'error') return { channel, op: 'error', direction: t.direction, from: t.from, message: t.message, ...destination };
  const { dirs, name, outcome, ...rest } = t;
  return { channel, ...rest, path: [...dirs, name].join('/'), ...destination, result: outcome };
}

/** Feed a legacy `scp -O` exec channel to the scp observer; one `ssh.scp` event per file or directory. A stream it cannot follow calls `undecodable` before the bytes are relayed. */
export function observeScp(host: ChannelHost, index: number, command: ScpCommand, undecodable: (why: string) => void): ChannelObserver {
  const obs = new ScpObserver({
    command,
    onTransfer: (t) => host.emit('ssh.scp', t.op !== 'error' && t.outcome === 'ok' ? 'success' : t.op !== 'error' && t.outcome === 'incomplete' ? 'unknown' : 'failure', scpEventDetails(t, index, command)),
    onError: (err) => {
      host.log.warn({ err: err.message, channel: index }, 'scp observation problem');
      // Every scp observation error stops the observer: what follows could not be recorded.
      undecodable(`${err.code}: ${err.message}`);
    },
  });
  return {
    clientData: (c) => obs.clientData(c),
    serverData: (c) => obs.serverData(c),
    close: () => obs.end(),
  };
}

/** Ctrl-U: kills the line being typed in readline, zle and the tty's own line editing (VKILL). */
const KILL_LINE = 0x15;

/**
 * The guardrail decision on one submitted line: its text when the keystrokes rebuild it exactly, else
 * unreadable (refused when a rule refuses what it cannot check). A line hidden because its prompt asks
 * for a secret is not a command and is not checked.
 */
function checkLine(guard: SessionGuardrails, l: SubmittedLine): GuardDecision | undefined {
  if (l.hidden) {
    if (!l.unsure) return undefined;
    return l.unsure.exact ? checkText(guard, l.unsure.text) : guard.checkUnreadable('keys whose effect only the shell knows (arrows, Tab, history) in a line typed ahead');
  }
  if (l.exact === false || l.command === undefined) return guard.checkUnreadable('keys whose effect only the shell knows (arrows, Tab, history, Ctrl-R)');
  return checkText(guard, l.command);
}

/**
 * Interactive bash and zsh expand history before parsing (`!!`, `!-2`, `!touch`, `!$`, `^old^new`): what
 * runs is only known to the shell. Any `!` followed by what could start an event designator is taken
 * for one (even inside single quotes, where bash would not expand it: refusing is the safe side).
 */
const HISTORY_EXPANSION = /![^\s=(]|^\s*\^/;

function checkText(guard: SessionGuardrails, text: string): GuardDecision {
  return HISTORY_EXPANSION.test(text) ? guard.checkUnreadable('history expansion (!, ^) is only known to the shell') : guard.checkCommand(text);
}

/**
 * Reconstruct interactive commands of a pty shell from a headless terminal; one `ssh.command` per Enter.
 * The emulator parses asynchronously; when it falls behind, the target's output waits (gate) rather than
 * queueing without bound. With `hooks` (strict mode, or guardrails on SSH), the chunk holding an Enter
 * waits until each line it submits is checked and, in strict mode, on record.
 */
export function observeTerminal(host: ChannelHost, index: number, pty: PtyInfo, recording: string | undefined, hooks?: TerminalHooks): ChannelObserver {
  let resume: (() => void) | undefined;
  // Lines whose Enter the tracker has evaluated and whose chunk has not taken them yet.
  const submitted: SubmittedLine[] = [];
  const submitLines = async (chunk: Buffer): Promise<void | Buffer> => {
    // Every input event queued so far is evaluated once this resolves, the chunk's own Enters included
    // (the flushes of earlier chunks took theirs).
    await tracker.flush();
    const lines = submitted.splice(0);
    const records: Array<Promise<void> | undefined> = [];
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]!;
      const d = hooks!.guard ? checkLine(hooks!.guard, l) : undefined;
      if (d && d.action !== 'allow') {
        refuse(l, d);
        // Neither this line nor what was typed after it in the chunk reaches the target.
        tracker.retract(lines.length - i);
        await Promise.all(records);
        return Buffer.concat([chunk.subarray(0, l.at), Buffer.from([KILL_LINE])]);
      }
      if (hooks!.strict)
        records.push(
          host.beforeForward('ssh.command.start', {
            source: 'terminal',
            prompt: l.prompt,
            ...(l.command !== undefined ? { command: l.command } : {}),
            ...(l.keys !== undefined ? { keys: l.keys } : {}),
            ...(l.exact === false ? { exact: false } : {}),
            ...(l.hidden ? { hidden: true } : {}),
            channel: index,
            recording,
          }),
        );
    }
    await Promise.all(records);
  };
  const refuse = (l: SubmittedLine, d: Exclude<GuardDecision, { action: 'allow' }>): void => {
    // A hidden line's text is recorded only when it matched a blocked command (then it is one); what
    // could not be checked may be a password typed ahead.
    const text = l.hidden ? (d.unparsed ? undefined : l.unsure?.text) : l.command;
    const what = {
      source: 'terminal',
      prompt: l.prompt,
      ...(text !== undefined ? { command: text } : {}),
      ...(l.keys !== undefined ? { keys: l.keys } : {}),
      ...(l.exact === false ? { exact: false } : {}),
      ...(l.hidden ? { hidden: true } : {}),
      channel: index,
      recording,
    };
    host.emit(d.unparsed ? 'guardrail.unparsed' : 'guardrail.blocked', 'failure', { ...what, decision: d.action, reason: d.reason, rule: d.rule });
    host.emit('ssh.command', 'failure', { ...what, refused_by: d.rule });
    const { hint } = refusalMessage(d, 'command');
    // Then the line as the screen shows it (prompt and echoed keys), so the shell's own redraw when it
    // gets Ctrl-U (cursor moves relative to where it believes the cursor is) lands on a line that matches.
    hooks!.tell(`\r\nvigil: guardrail "${d.rule}" refused this command (${d.reason}); it was not sent to the target.\r\n${hint}\r\n${tracker.currentLine()}`);
  };
  const tracker = new CommandTracker({
    cols: pty.cols || 80,
    rows: pty.rows || 24,
    onSubmit: hooks ? (l) => submitted.push(l) : undefined,
    onCommand: (c) =>
      host.emit('ssh.command', c.unconfirmed ? 'unknown' : 'success', {
        ...(c.hidden ? { hidden: true } : { command: c.command }),
        source: c.source,
        prompt: c.prompt,
        ...(c.echo === false ? { echo: false } : {}),
        ...(c.exact === false ? { exact: false } : {}),
        ...(c.unconfirmed ? { unconfirmed: true } : {}),
        channel: index,
        recording,
      }),
    onDrain: () => resume?.(),
  });
  return {
    clientData: (c) => {
      if (tracker.input(c) > 0 && hooks) hooks.hold(submitLines(c));
    },
    serverData: (c) => tracker.output(c),
    resize: (cols, rows) => tracker.resize(cols, rows),
    gate: { onDrain: (cb) => (resume = cb) },
    close: () => {
      // Let the emulator finish what it was given (the last command's Enter), report lines the shell
      // never echoed back, and drop it.
      return tracker.finish();
    },
  };
}

/**
 * A shell without a terminal reading its commands from stdin (`ssh host < script.sh`, `ssh host bash -s`):
 * one `ssh.command` (source: stdin) per complete command, emitted before the byte that completes it is
 * forwarded; what is left unfinished at the end is reported when the channel closes.
 */
export function observeShellInput(host: ChannelHost, index: number, recording: string | undefined): ChannelObserver {
  const splitter = new ShellInputSplitter();
  const emit = (commands: string[]) => {
    for (const command of commands) host.emit('ssh.command', 'success', { command, source: 'stdin', channel: index, recording });
  };
  return {
    clientData: (c) => emit(splitter.push(c)),
    serverData: () => true,
    close: () => emit(splitter.end()),
  };
}
