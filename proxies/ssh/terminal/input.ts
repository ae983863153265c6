/**
 * Classifies what the client typed into the few things command tracking cares about. Everything else
 * (letters, arrows, Tab, Ctrl-A, …) is just "a key": its effect is read back from the screen the shell
 * redraws, never interpreted here.
 */
export type InputEvent = 'key' | 'enter' | 'cancel';

const ESC = 0x1b;
const PASTE_START = '[200~';
const PASTE_END = '[201~';

export class InputClassifier {
  /** Inside a bracketed paste (`ESC[200~` … `ESC[201~`): a pasted newline is text, not Enter. */
  private pasting = false;
  /** Bytes of an escape sequence seen so far (only enough to spot the paste brackets). */
  private esc: string | null = null;

  /** Events in order; runs of plain keys are folded into one `key`. */
  classify(data: Uint8Array): InputEvent[] {
    const out: InputEvent[] = [];
    const push = (e: InputEvent) => {
      if (e !== 'key' || out[out.length - 1] !== 'key') out.push(e);
    };
    for (const b of data) {
      if (this.esc !== null) {
        this.esc += String.fromCharCode(b);
        if (this.esc === PASTE_START) { this.pasting = true; this.esc = null; }
        else if (this.esc === PASTE_END) { this.pasting = false; this.esc = null; }
        else if (!PASTE_START.startsWith(this.esc) && !PASTE_END.startsWith(this.esc)) this.esc = null;
        push('key');
        continue;
      }
      if (b === ESC) {
        this.esc = '';
        push('key');
      } else if ((b === 0x0d || b === 0x0a) && !this.pasting) {
        push('enter');
      } else if (b === 0x03 && !this.pasting) {
        push('cancel');
      } else {
        push('key');
      }
    }
    return out;
  }
}
