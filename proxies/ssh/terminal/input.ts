/**
 * Classifies what the client typed into what command tracking cares about: Enter, Ctrl-C, and the keys
 * in between. Keys are kept as a small edit script (text, erase, kill) so a line can be rebuilt from the
 * keystrokes alone when the screen never shows it (typed ahead, or typed with echo off); a key whose
 * effect depends on the program (arrows, Tab, Ctrl-A …) is only noted as `other`, its effect is read
 * back from the screen the shell redraws.
 */
export type KeyOp = { text: string } | 'erase' | 'kill-line' | 'kill-word' | 'other';

/** `raw`: the bytes of the keys as typed (escape sequences included), for a record of what was pressed; `at`: where the Enter is in the chunk given to `classify`. */
export type InputEvent = { type: 'keys'; ops: KeyOp[]; raw?: string } | { type: 'enter'; at: number } | { type: 'cancel' } | { type: 'eof' };

const ESC = 0x1b;
const PASTE_START = '[200~';
const PASTE_END = '[201~';

export class InputClassifier {
  /** Inside a bracketed paste (`ESC[200~` … `ESC[201~`): a pasted newline is text, not Enter. */
  private pasting = false;
  /** Bytes of an escape sequence seen so far, without the ESC; null outside one. */
  private esc: string | null = null;
  private readonly decoder = new TextDecoder('utf-8');

  /** Events in order; runs of keys are folded into one `keys` event. */
  classify(data: Uint8Array): InputEvent[] {
    const out: InputEvent[] = [];
    let text: number[] = [];
    const op = (o: KeyOp) => {
      const last = out[out.length - 1];
      if (last?.type === 'keys') last.ops.push(o);
      else out.push({ type: 'keys', ops: [o] });
    };
    const flushText = (final: boolean) => {
      if (text.length === 0 && !final) return;
      const s = this.decoder.decode(Uint8Array.from(text), { stream: !final });
      text = [];
      if (s) op({ text: s });
    };
    // Each run of keys lies between two Enters/Ctrl-Cs (or the chunk's ends): its raw bytes are that span.
    let runStart = 0;
    const closeRun = (end: number) => {
      const last = out[out.length - 1];
      if (last?.type === 'keys' && last.raw === undefined) last.raw = Buffer.from(data.subarray(runStart, end)).toString('utf8');
    };
    const push = (e: InputEvent, at: number) => {
      flushText(false);
      closeRun(at);
      runStart = at + 1;
      out.push(e);
    };
    for (let i = 0; i < data.length; i++) {
      const b = data[i]!;
      if (this.esc !== null) {
        this.esc += String.fromCharCode(b);
        if (this.esc === PASTE_START) { this.pasting = true; this.esc = null; continue; }
        if (this.esc === PASTE_END) { this.pasting = false; this.esc = null; continue; }
        if (escapeComplete(this.esc)) { this.esc = null; flushText(false); op('other'); }
        continue;
      }
      if (b === ESC) {
        this.esc = '';
      } else if ((b === 0x0d || b === 0x0a) && !this.pasting) {
        push({ type: 'enter', at: i }, i);
      } else if (b === 0x03 && !this.pasting) {
        push({ type: 'cancel' }, i);
      } else if (b === 0x04 && !this.pasting) {
        // Ctrl-D: end of input on an empty line (a shell, `cat`, a here-document), delete-char on a typed one.
        push({ type: 'eof' }, i);
      } else if (b >= 0x20 && b !== 0x7f) {
        text.push(b);
      } else if (this.pasting && (b === 0x0a || b === 0x0d || b === 0x09)) {
        text.push(b === 0x0d ? 0x0a : b);
      } else {
        flushText(false);
        op(b === 0x7f || b === 0x08 ? 'erase' : b === 0x15 ? 'kill-line' : b === 0x17 ? 'kill-word' : 'other');
      }
    }
    flushText(false);
    closeRun(data.length);
    return out;
  }
}

/** Is `seq` (the bytes after ESC) a whole escape sequence: CSI (`[` … final), SS3 (`O` + one), or Alt+key? */
function escapeComplete(seq: string): boolean {
  if (seq.length === 1) return seq !== '[' && seq !== 'O';
  if (seq[0] === 'O') return true;
  const last = seq.charCodeAt(seq.length - 1);
  return last >= 0x40 && last <= 0x7e;
}

/**
 * A line rebuilt from keystrokes. `exact` is false once a key whose effect this cannot know (cursor
 * movement, history, completion) was pressed: the text is then only what was inserted and erased.
 */
const MAX_TYPED_CHARS = 64 * 1024;

export class TypedLine {
  text = '';
  exact = true;
  /** The keys as pressed (escape sequences included), capped like `text`. */
  raw = '';

  apply(ops: KeyOp[], raw = ''): void {
    if (this.raw.length < MAX_TYPED_CHARS) this.raw = (this.raw + raw).slice(0, MAX_TYPED_CHARS);
    for (const o of ops) {
      if (typeof o === 'object') {
        this.text += o.text;
        // A paste of megabytes without Enter: keep the start; the screen has the rest.
        if (this.text.length > MAX_TYPED_CHARS) {
          this.text = this.text.slice(0, MAX_TYPED_CHARS);
          this.exact = false;
        }
      }
      else if (o === 'erase') this.text = [...this.text].slice(0, -1).join('');
      else if (o === 'kill-line') this.text = '';
      else if (o === 'kill-word') this.text = this.text.replace(/\S*\s*$/, '');
      else this.exact = false;
    }
  }
}
