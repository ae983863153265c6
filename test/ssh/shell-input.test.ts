import { describe, expect, it } from 'vitest';
import { ShellInputSplitter, readsCommandsFromStdin, startsShell, MAX_COMMAND_CHARS } from '../../proxies/ssh/terminal/shell-input.ts';

/** Split `text` fed in `chunk`-byte pieces, then end. */
function split(text: string, chunk = 7): string[] {
  const s = new ShellInputSplitter();
  const buf = Buffer.from(text);
  const out: string[] = [];
  for (let i = 0; i < buf.length; i += chunk) out.push(...s.push(buf.subarray(i, i + chunk)));
  return [...out, ...s.end()];
}

describe('ShellInputSplitter: commands of a script read from stdin', () => {
  it('one command per line; blank and comment-only lines are not commands', () => {
    expect(split('echo one\n\n# a comment\necho two # trailing\n  ls -l\n')).toEqual(['echo one', 'echo two # trailing', '  ls -l']);
  });

  it('keeps compound commands, quotes, here-documents and continuations whole, newlines included', () => {
    const script = [
      'for i in 1 2; do',
      '  echo "$i"',
      'done',
      "echo 'multi",
      "line'",
      'cat <<EOF',
      'if this is not a keyword',
      'EOF',
      'cat <<-"END" | tr a-z A-Z',
      '\tbody',
      '\tEND',
      'echo a \\',
      '  b',
      'false ||',
      '  echo fallback',
      'if true; then',
      '  case x in',
      '    x) echo x ;;',
      '    (y) echo y ;;',
      '  esac',
      'fi',
      '{ echo grouped; }',
      'f() {',
      '  echo "}"',
      '}',
      'x=$(echo sub',
      ')',
      'echo done if fi',
      'echo last-without-newline',
    ].join('\n');
    expect(split(script)).toEqual([
      'for i in 1 2; do\n  echo "$i"\ndone',
      "echo 'multi\nline'",
      'cat <<EOF\nif this is not a keyword\nEOF',
      'cat <<-"END" | tr a-z A-Z\n\tbody\n\tEND',
      'echo a \\\n  b',
      'false ||\n  echo fallback',
      'if true; then\n  case x in\n    x) echo x ;;\n    (y) echo y ;;\n  esac\nfi',
      '{ echo grouped; }',
      'f() {\n  echo "}"\n}',
      'x=$(echo sub\n)',
      'echo done if fi',
      'echo last-without-newline',
    ]);
  });

  it('an unfinished command is reported at the end of the stream, and an endless one in pieces', () => {
    expect(split('echo "never closed\nrm -rf /tmp/x\n')).toEqual(['echo "never closed\nrm -rf /tmp/x']);
    const s = new ShellInputSplitter();
    const pieces = s.push(Buffer.from(`echo '${'x'.repeat(MAX_COMMAND_CHARS)}\n`));
    expect(pieces.length).toBe(1);
    expect(pieces[0]!.length).toBeGreaterThan(MAX_COMMAND_CHARS);
  });

  it('decodes UTF-8 split across chunks', () => {
    expect(split('echo grüße\n', 1)).toEqual(['echo grüße']);
  });
});

describe('readsCommandsFromStdin', () => {
  it('tells a shell reading stdin from one running a command or a script file', () => {
    for (const c of ['bash', 'bash -s', 'sh -x', '/bin/bash -s -- a b', 'bash -l', 'bash --login -s', 'sudo bash -s', 'zsh -es', 'bash --noprofile --rcfile /etc/x.rc -i', 'bash -o pipefail']) expect([c, readsCommandsFromStdin(c)]).toEqual([c, true]);
    for (const c of ['bash -c ls', 'bash -lc ls', 'bash script.sh', 'bash -- script.sh', 'cat', 'python3', 'bash -x deploy.sh', 'sudo -u bob bash', 'bash -O extglob run.sh']) expect([c, readsCommandsFromStdin(c)]).toEqual([c, false]);
  });
});

describe('startsShell', () => {
  it('tells a command that starts an interactive shell on a terminal', () => {
    for (const c of ['bash', 'su', 'su -', 'su - deploy', 'sudo -i', 'sudo -s', 'sudo -u deploy -i', 'sudo su -', 'sudo bash', 'sudo --login']) expect([c, startsShell(c)]).toEqual([c, true]);
    for (const c of ['top', 'sudo systemctl restart nginx', 'su -c id', 'sudo -u deploy id', 'stty size; read x', 'sudo']) expect([c, startsShell(c)]).toEqual([c, false]);
  });
});
