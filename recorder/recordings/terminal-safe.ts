/**
 * Recorded terminal output made safe for the auditor's own terminal (`vigil replay`, `vigil watch`).
 *
 * A recorded session controls every byte it printed. Played back raw, it could write the auditor's clipboard
 * (OSC 52), retitle the window, or send queries (DA, DSR, window reports) whose answers the auditor's
 * terminal types into the auditor's keyboard input. So output passes an allowlist: printable text, a few
 * C0 controls, and the CSI/ESC sequences that only draw (colours, cursor movement, erasing, scroll regions,
 * the alternate screen, cursor visibility, charset designations). Everything else is dropped whole,
 * including every string sequence (OSC, DCS, SOS, PM, APC) and every sequence that asks for a report.
 *
 * Only complete, allowed sequences are ever emitted, so the auditor's terminal is always back in its
 * ground state after each emitted piece, whatever was dropped. The filter keeps its state between writes:
 * a sequence split across two recorded chunks is recognised (and dropped or kept) as a whole.
 */

/** C0 controls passed through: BS, TAB, LF, CR, SO/SI (charset shifts, paired with the designations). */
const ALLOWED_C0 = new Set([0x08, 0x09, 0x0a, 0x0d, 0x0e, 0x0f]);

/** ESC + one final byte that only moves the cursor or sets the keypad: DECSC/DECRC, IND, NEL, RI, DECKPAM/DECKPNM. */
const ALLOWED_ESC_FINALS = new Set(['7', '8', 'D', 'E', 'M', '=', '>']);

/** CSI finals without a private prefix that draw and never report. `J` is checked apart (no ED 3). */
const ALLOWED_CSI_FINALS = new Set([
  'm', // SGR colours and attributes
  'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'f', 'd', 'e', 'a', '`', 'I', 'Z', // cursor movement and positioning
  'K', 'J', // erase in line / display
  'r', // scroll region (DECSTBM)
  'S', 'T', 'L', 'M', '@', 'P', 'X', // scroll, insert/delete lines and characters, erase characters
  's', 'u', // save/restore cursor
  'g', // clear tab stops
]);

/** DEC private modes (`CSI ? n h/l`) passed through: autowrap, blinking and visible cursor, the alternate screen. */
const ALLOWED_PRIVATE_MODES = new Set([7, 12, 25, 47, 1047, 1048, 1049]);
const ALT_SCREEN_MODES = new Set([47, 1047, 1049]);

/** Longer CSI sequences are not drawing anything this filter lets through: dropped without being kept. */
const MAX_CSI_LENGTH = 64;

type State = 'ground' | 'escape' | 'escape-intermediate' | 'charset' | 'csi' | 'csi-ignore' | 'string' | 'string-escape';

export class TerminalSafeFilter {
  private state: State = 'ground';
  private csi = '';
  private charsetSlot = '';
  /** A high surrogate at the end of a write, held until its low half arrives. */
  private pendingHigh = '';
  // What the emitted output changed in the auditor's terminal, undone by end().
  private altScreen = false;
  private cursorHidden = false;
  private scrollRegion = false;
  private styled = false;
  private autowrapOff = false;
  private cursorBlinking = false;
  private cursorShaped = false;
  private keypadApplication = false;
  // Charsets: G0 and G1 designations, and whether SO shifted G1 in.
  private g0 = 'B';
  private g1 = 'B';
  private shiftedOut = false;

  /** The safe part of `chunk` (and of any sequence begun in earlier chunks that ends in it). */
  write(chunk: string): string {
    let out = '';
    let text = this.pendingHigh + chunk;
    this.pendingHigh = '';
    const last = text.charCodeAt(text.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) {
      this.pendingHigh = text.slice(-1);
      text = text.slice(0, -1);
    }
    let i = 0;
    while (i < text.length) {
      if (this.state === 'ground') {
        PRINTABLE_RUN.lastIndex = i;
        const run = PRINTABLE_RUN.exec(text);
        if (run) {
          out += run[0];
          i += run[0].length;
          continue;
        }
      }
      out += this.step(text[i]);
      i++;
    }
    return out;
  }

  /**
   * Sequences that undo what the played output left set: alternate screen, hidden cursor, colours, scroll
   * region, and what the auditor's shell would go on living with: autowrap off, cursor blink and shape,
   * application keypad, a line-drawing charset designated or shifted in.
   */
  end(): string {
    let out = '';
    if (this.scrollRegion) out += '\x1b[r';
    if (this.altScreen) out += '\x1b[?1049l';
    if (this.cursorHidden) out += '\x1b[?25h';
    if (this.styled) out += '\x1b[0m';
    if (this.autowrapOff) out += '\x1b[?7h';
    if (this.cursorBlinking) out += '\x1b[?12l';
    if (this.cursorShaped) out += '\x1b[0 q';
    if (this.keypadApplication) out += '\x1b>';
    if (this.shiftedOut || this.g0 !== 'B' || this.g1 !== 'B') out += '\x0f\x1b(B\x1b)B';
    this.state = 'ground';
    this.pendingHigh = '';
    this.altScreen = this.cursorHidden = this.scrollRegion = this.styled = false;
    this.autowrapOff = this.cursorBlinking = this.cursorShaped = this.keypadApplication = this.shiftedOut = false;
    this.g0 = this.g1 = 'B';
    return out;
  }

  /** An allowed C0 control as it is emitted (SO/SI tracked for end()), or '' for any other. */
  private c0(code: number, ch: string): string {
    if (!ALLOWED_C0.has(code)) return '';
    if (code === 0x0e) this.shiftedOut = true;
    if (code === 0x0f) this.shiftedOut = false;
    return ch;
  }

  private step(ch: string): string {
    const code = ch.charCodeAt(0);
    // CAN and SUB abort any sequence; ESC starts a new one (and ends a string with ST = ESC \).
    if (code === 0x18 || code === 0x1a) {
      this.state = 'ground';
      return '';
    }
    switch (this.state) {
      case 'ground':
        return this.ground(code, ch);
      case 'escape':
        return this.escape(code, ch);
      case 'escape-intermediate':
        // ESC with intermediates (DECALN, S7C1T, …): nothing drawn this filter needs; dropped at the final.
        if (code === 0x1b) this.state = 'escape';
        else if (code >= 0x30 && code <= 0x7e) this.state = 'ground';
        return '';
      case 'charset':
        if (code === 0x1b) {
          this.state = 'escape';
          return '';
        }
        this.state = 'ground';
        if (!'B0A'.includes(ch)) return '';
        if (this.charsetSlot === '(') this.g0 = ch;
        else this.g1 = ch;
        return `\x1b${this.charsetSlot}${ch}`;
      case 'csi':
      case 'csi-ignore':
        return this.csiByte(code, ch);
      case 'string':
        if (code === 0x1b) this.state = 'string-escape';
        else if (code === 0x07 || code === 0x9c) this.state = 'ground'; // BEL ends an OSC; C1 ST any string
        return '';
      case 'string-escape':
        // ESC \ is ST; ESC then anything else leaves the string in a terminal too, starting a new escape.
        if (ch === '\\') {
          this.state = 'ground';
          return '';
        }
        this.state = 'escape';
        return this.escape(code, ch);
    }
  }

  private ground(code: number, ch: string): string {
    if (code === 0x1b) this.state = 'escape';
    else if (code === 0x9b) this.beginCsi();
    else if (code === 0x90 || code === 0x9d || code === 0x98 || code === 0x9e || code === 0x9f) this.state = 'string';
    else return this.c0(code, ch);
    // Any other C0 or C1 control (BEL, ENQ — which asks for an answerback —, NUL, DEL, …) is dropped.
    return '';
  }

  private escape(code: number, ch: string): string {
    if (code === 0x1b) return '';
    if (code < 0x20) {
      // A terminal executes a C0 control met inside an escape sequence and goes on with the sequence.
      return this.c0(code, ch);
    }
    this.state = 'ground';
    if (ch === '[') this.beginCsi();
    else if (ch === ']' || ch === 'P' || ch === 'X' || ch === '^' || ch === '_') this.state = 'string';
    else if (ch === '(' || ch === ')') {
      this.charsetSlot = ch;
      this.state = 'charset';
    } else if (code >= 0x20 && code <= 0x2f) this.state = 'escape-intermediate';
    else if (ALLOWED_ESC_FINALS.has(ch)) {
      if (ch === '=' || ch === '>') this.keypadApplication = ch === '=';
      return `\x1b${ch}`;
    }
    // Anything else (RIS, DECID — a report request —, …) is dropped.
    return '';
  }

  private beginCsi(): void {
    this.state = 'csi';
    this.csi = '';
  }

  private csiByte(code: number, ch: string): string {
    if (code === 0x1b) {
      this.state = 'escape';
      return '';
    }
    if (code < 0x20) return this.c0(code, ch);
    if (code >= 0x40 && code <= 0x7e) {
      const ignored = this.state === 'csi-ignore';
      this.state = 'ground';
      return ignored ? '' : this.csiSequence(this.csi, ch);
    }
    if (code > 0x7e) {
      // Not part of any CSI sequence: a terminal would give up on it; so does the filter.
      this.state = 'ground';
      return '';
    }
    if (this.state === 'csi') {
      this.csi += ch;
      if (this.csi.length > MAX_CSI_LENGTH) this.state = 'csi-ignore';
    }
    return '';
  }

  /** The sequence to emit for `CSI body final`, or '' to drop it. */
  private csiSequence(body: string, final: string): string {
    if (body === ' ' && final === 'q') {
      this.cursorShaped = false;
      return '\x1b[ q'; // DECSCUSR, default cursor style
    }
    const m = /^([?]?)([0-9;:]*)( ?)$/.exec(body);
    if (!m) return ''; // other private prefixes (>, =, <) and intermediates ($, !, ", ', …): reports and settings
    const [, privateMark, params, space] = m;
    if (space) {
      if (final !== 'q' || !/^\d?$/.test(params) || privateMark) return '';
      this.cursorShaped = params !== '' && params !== '0';
      return `\x1b[${params} q`;
    }
    if (privateMark) {
      if (final !== 'h' && final !== 'l') return '';
      const modes = params.split(';').map(Number).filter((n) => ALLOWED_PRIVATE_MODES.has(n));
      if (!modes.length) return '';
      for (const n of modes) {
        if (ALT_SCREEN_MODES.has(n)) this.altScreen = final === 'h';
        if (n === 25) this.cursorHidden = final === 'l';
        if (n === 7) this.autowrapOff = final === 'l';
        if (n === 12) this.cursorBlinking = final === 'h';
      }
      return `\x1b[?${modes.join(';')}${final}`;
    }
    if (!ALLOWED_CSI_FINALS.has(final)) return ''; // DA (c), DSR (n), window ops (t), DECREQTPARM (x), modes (h/l), …
    // ED 3 erases the auditor's own scrollback: what was replayed so far stays readable.
    if (final === 'J' && !/^[012]?$/.test(params)) return '';
    // CSI with five or more parameters and final T starts xterm mouse highlight tracking.
    if (final === 'T' && params.includes(';')) return '';
    if (final === 'm') this.styled = true;
    if (final === 'r') this.scrollRegion = params !== '';
    return `\x1b[${params}${final}`;
  }
}

/** Characters that need no state: everything but C0, DEL, C1 and a trailing high surrogate. */
const PRINTABLE_RUN = /[^\x00-\x1f\x7f-\x9f]+/y;

/** `text` (a whole output, not a stream) with everything unsafe for a terminal removed; see TerminalSafeFilter. */
export function terminalSafe(text: string): string {
  const f = new TerminalSafeFilter();
  return f.write(text);
}
