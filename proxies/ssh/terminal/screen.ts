import type { IBuffer } from '@xterm/headless';

/**
 * Reading text back from the emulator's buffer. A logical line is one row plus the rows the terminal
 * wrapped it onto (`isWrapped`); shells redraw long command lines that way.
 */

export interface LogicalLine {
  start: number;
  end: number;
}

/** The logical line containing absolute row `row`. */
export function logicalLineAt(buf: IBuffer, row: number): LogicalLine {
  let start = row;
  while (start > 0 && buf.getLine(start)?.isWrapped) start--;
  let end = row;
  while (buf.getLine(end + 1)?.isWrapped) end++;
  return { start, end };
}

/**
 * Text of rows `from`..`to` joined; every row but the last is kept whole (a space at a wrap point is
 * part of the text), the last is cut at column `endCol` when given, else trimmed on the right.
 */
export function rowsText(buf: IBuffer, from: number, to: number, endCol?: number): string {
  let s = '';
  for (let r = from; r <= to; r++) {
    const line = buf.getLine(r);
    if (!line) break;
    s += r < to ? line.translateToString(false) : endCol === undefined ? line.translateToString(true) : line.translateToString(false, 0, endCol);
  }
  return s;
}

/** Absolute row of the cursor. */
export function cursorRow(buf: IBuffer): number {
  return buf.baseY + buf.cursorY;
}

/** What stands before the cursor on its logical line: the prompt, when the user has not typed yet. */
export function textBeforeCursor(buf: IBuffer): string {
  const row = cursorRow(buf);
  return rowsText(buf, logicalLineAt(buf, row).start, row, buf.cursorX);
}

/**
 * The command line ending at absolute row `lastRow`, read upwards one logical line at a time until one
 * starts with `prompt`, but never above `topRow` (where the prompt was when typing began). Lines are
 * joined with "\n" (a pasted multi-line command). `found` is false when no line started with the prompt;
 * `text` is then the last logical line alone.
 */
export function commandLines(buf: IBuffer, lastRow: number, prompt: string, topRow: number): { found: boolean; text: string } {
  const lines: string[] = [];
  let end = lastRow;
  for (;;) {
    const { start } = logicalLineAt(buf, end);
    const text = rowsText(buf, start, end);
    lines.unshift(text);
    if (text.padEnd(prompt.length).startsWith(prompt)) return { found: true, text: lines.join('\n') };
    if (start <= topRow || start === 0) return { found: false, text: lines[lines.length - 1] };
    end = start - 1;
  }
}
