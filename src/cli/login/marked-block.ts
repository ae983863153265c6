import fs from 'node:fs';
import path from 'node:path';

/**
 * The part of a user's file that vigil owns: between a begin and an end marker line. Writing replaces
 * only that part (or adds it), so running `vigil login` again changes nothing when nothing changed, and
 * the user's own lines before and after are never touched. Removing takes out the block and its markers.
 */
export const BLOCK_BEGIN = '# >>> vigil: managed by `vigil login`, removed by `vigil logout`; edits here are overwritten >>>';
export const BLOCK_END = '# <<< vigil <<<';

/**
 * `top`: a new block goes first in the file. ssh_config needs it: an `Include` or `Host` placed after the
 * user's last `Host` section would become part of that section.
 */
export type BlockPlace = 'top' | 'end';

function split(text: string): { before: string[]; after: string[]; found: boolean } {
  const lines = text.length ? text.replace(/\n$/, '').split('\n') : [];
  const b = lines.indexOf(BLOCK_BEGIN);
  const e = b >= 0 ? lines.indexOf(BLOCK_END, b + 1) : -1;
  if (b < 0 || e < 0) return { before: lines, after: [], found: false };
  return { before: lines.slice(0, b), after: lines.slice(e + 1), found: true };
}

/** The file's text with `body` (lines, without markers) as vigil's block. */
export function withBlock(text: string, body: string[], place: BlockPlace): string {
  const { before, after, found } = split(text);
  const block = [BLOCK_BEGIN, ...body, BLOCK_END];
  let lines: string[];
  if (found) lines = [...before, ...block, ...after];
  else if (place === 'top') lines = [...block, ...(before.length ? ['', ...before] : [])];
  else lines = [...before, ...(before.length && before[before.length - 1] !== '' ? [''] : []), ...block];
  return lines.join('\n') + '\n';
}

/** The file's text without vigil's block (and without the blank line vigil put next to it). */
export function withoutBlock(text: string): string {
  const { before, after, found } = split(text);
  if (!found) return text;
  const b = before[before.length - 1] === '' && (after.length === 0 || after[0] === '') ? before.slice(0, -1) : before;
  const a = b.length === 0 && after[0] === '' ? after.slice(1) : after;
  const lines = [...b, ...a];
  return lines.length ? lines.join('\n') + '\n' : '';
}

/** Write `file` (created 0600 with its directory 0700) only when its text changes; keeps an existing file's mode. */
export function writeBlock(file: string, body: string[], place: BlockPlace): boolean {
  const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const next = withBlock(old, body, place);
  if (next === old) return false;
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  replaceFile(file, next);
  return true;
}

export function removeBlock(file: string): boolean {
  if (!fs.existsSync(file)) return false;
  const old = fs.readFileSync(file, 'utf8');
  const next = withoutBlock(old);
  if (next === old) return false;
  replaceFile(file, next);
  return true;
}

/**
 * Through a temporary file and rename, so an interrupted write never leaves half a config behind. A
 * symlinked file (dotfiles repositories link ~/.ssh/config) is written at its target: renaming over the
 * link would replace it with a plain file. The temporary file sits next to the target so the rename
 * stays on one filesystem.
 */
function replaceFile(file: string, text: string): void {
  const target = realTarget(file);
  const mode = fs.existsSync(target) ? fs.statSync(target).mode & 0o777 : 0o600;
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.vigil-${process.pid}.tmp`);
  fs.writeFileSync(tmp, text, { mode });
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, target);
}

/** Where `file` really is: through any symlinks, also a dangling one (its target is created). */
function realTarget(file: string): string {
  let current = file;
  for (let hops = 0; hops < 40; hops++) {
    let link: string;
    try {
      link = fs.readlinkSync(current);
    } catch {
      return current; // not a symlink, or does not exist yet
    }
    current = path.resolve(path.dirname(current), link);
  }
  return fs.realpathSync(file); // a loop: let realpath report it
}
