/**
 * Recognises the remote half of a legacy (rcp-protocol) `scp -O` transfer in an exec command:
 * `scp [-r] [-p] [-d] -t TARGET` receives files (an upload), `scp … -f PATH…` sends them (a download).
 */
export interface ScpCommand {
  /** `upload`: the client sends files (`-t`, the remote is the sink); `download`: `-f`, the remote sends. */
  direction: 'upload' | 'download';
  recursive: boolean;
  /** The remote path(s) as given (a download may name several, or globs the remote shell expands). */
  paths: string[];
}

export function parseScpCommand(command: string): ScpCommand | null {
  const words = shellWords(command);
  if (!words || words.length < 2) return null;
  const prog = words[0];
  if (prog !== 'scp' && !prog.endsWith('/scp')) return null;
  let direction: ScpCommand['direction'] | undefined;
  let recursive = false;
  let i = 1;
  for (; i < words.length; i++) {
    const w = words[i];
    if (w === '--') { i++; break; }
    if (!w.startsWith('-') || w === '-') break;
    for (const flag of w.slice(1)) {
      if (flag === 't') direction = 'upload';
      else if (flag === 'f') direction = 'download';
      else if (flag === 'r') recursive = true;
    }
  }
  if (!direction) return null;
  const paths = words.slice(i);
  return paths.length ? { direction, recursive, paths } : null;
}

/** POSIX-shell word splitting for the quoting scp itself produces ('…', "…", backslash); null if unbalanced. */
function shellWords(s: string): string[] | null {
  const out: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) return null;
      cur += s.slice(i + 1, end);
      i = end;
      inWord = true;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < s.length && s[j] !== '"'; j++) {
        if (s[j] === '\\' && j + 1 < s.length && '"\\$`'.includes(s[j + 1])) j++;
        cur += s[j];
      }
      if (j >= s.length) return null;
      i = j;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) out.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) out.push(cur);
  return out;
}
