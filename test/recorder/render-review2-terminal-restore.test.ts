import { describe, expect, it } from 'vitest';
import { TerminalSafeFilter } from '../../recorder/recordings/terminal-safe.ts';

/**
 * What the terminal-safe filter lets a recording set in the auditor's terminal, it must undo at the end of a
 * replay: otherwise the auditor's shell afterwards prints in line-drawing characters, its keypad sends
 * application codes, long lines stop wrapping, or the cursor keeps the recorded program's shape.
 */

const ESC = '\x1b';

describe('terminal-safe filter: end() gives the terminal back', () => {
  it('a line-drawing charset left designated or shifted in is reset to ASCII', () => {
    const shiftedIn = new TerminalSafeFilter();
    expect(shiftedIn.write(`${ESC})0\x0elqk`)).toBe(`${ESC})0\x0elqk`);
    expect(shiftedIn.end()).toBe(`\x0f${ESC}(B${ESC})B`);
    const designated = new TerminalSafeFilter();
    designated.write(`${ESC}(0lqk`);
    expect(designated.end()).toBe(`\x0f${ESC}(B${ESC})B`);
    // Put back by the recording itself: nothing to undo.
    const restored = new TerminalSafeFilter();
    restored.write(`${ESC}(0lqk${ESC}(B`);
    expect(restored.end()).toBe('');
  });

  it('application keypad, autowrap off, a blinking cursor and a cursor shape are reset', () => {
    const f = new TerminalSafeFilter();
    expect(f.write(`${ESC}=${ESC}[?7l${ESC}[?12h${ESC}[5 q`)).toBe(`${ESC}=${ESC}[?7l${ESC}[?12h${ESC}[5 q`);
    expect(f.end()).toBe(`${ESC}[?7h${ESC}[?12l${ESC}[0 q${ESC}>`);
    expect(f.end()).toBe('');
    const undone = new TerminalSafeFilter();
    undone.write(`${ESC}=${ESC}>${ESC}[?7l${ESC}[?7h${ESC}[3 q${ESC}[0 q`);
    expect(undone.end()).toBe('');
  });
});
