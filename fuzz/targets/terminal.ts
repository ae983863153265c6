import { CommandTracker, ShellInputSplitter, readsCommandsFromStdin, startsShell, type TerminalCommand } from '../../proxies/ssh/terminal/index.ts';
import { InputClassifier, TypedLine } from '../../proxies/ssh/terminal/input.ts';
import { check, type FuzzTarget } from '../engine/target.ts';
import { parseSession } from '../engine/session.ts';

/**
 * SSH terminal reconstruction: keystrokes (direction 0), screen output (1) and resizes (2) through the
 * command tracker (xterm headless screen model), plus the keystroke classifier and the line splitter
 * used for shells reading commands from stdin. Nothing may throw; commands are bounded strings.
 */
export const target: FuzzTarget = {
  name: 'terminal',
  covers: ['proxies/ssh/terminal/'],
  maxLen: 4096,
  dictionary: ['\r', '\n', '\x1b[?2004h', '\x1b[?2004l', '\x1b[200~', '\x1b[201~', '\x7f', '\x15', '\x17', '\x03', '\x1b[A', '\x1b[D', '\x1b[2J', '\x1b[H', '$ ', 'ls -la', '\x1b[?1049h', '\x1b[?1049l', '\x1b]0;title\x07'],
  async run(data) {
    const commands: TerminalCommand[] = [];
    const t = new CommandTracker({ cols: 40, rows: 10, onCommand: (c) => commands.push(c), onSubmit: () => undefined, highWaterMark: 4096, maxBacklog: 16384 });
    const classifier = new InputClassifier();
    const line = new TypedLine();
    const splitter = new ShellInputSplitter();
    for (const c of parseSession(data)) {
      if (c.dir % 3 === 0) {
        t.input(c.bytes);
        for (const ev of classifier.classify(c.bytes)) if (ev.type === 'keys') line.apply(ev.ops, ev.raw);
        splitter.push(c.bytes);
      } else if (c.dir % 3 === 1) t.output(c.bytes);
      else t.resize(2 + ((c.bytes[0] ?? 0) % 200), 1 + ((c.bytes[1] ?? 0) % 100));
    }
    splitter.end();
    // As the relay closes a channel: lines still waiting for their echo are reported unconfirmed.
    await t.finish();
    const text = data.toString('latin1');
    readsCommandsFromStdin(text);
    startsShell(text);
    for (const c of commands) {
      check(typeof c.command === 'string' && c.command.length <= 64 * 1024 + 64, 'command text missing or unbounded');
      check(c.hidden ? c.command === '' && c.unconfirmed === true : c.command !== '', 'a hidden line with text, or a shown one without');
    }
  },
};
