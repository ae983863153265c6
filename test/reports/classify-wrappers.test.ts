import { describe, it, expect } from 'vitest';
import { classifyShellCommand, classifyShellLine } from '../../recorder/reports/classify-ssh.ts';

/**
 * The program a wrapper runs is found after that wrapper's own options, and which options take an argument
 * depends on the wrapper: `sudo -n` is a flag, `nice -n 5` takes one. Reading them with one shared list
 * took `rm` for the argument of `sudo -n` and missed the change.
 */
describe('access report: the program after a wrapper and its options', () => {
  it('flags that another wrapper reads as taking an argument do not hide the command', () => {
    const cases: [string, string | undefined][] = [
      ['sudo -n rm -rf /srv/data', 'file'],
      ['sudo -n systemctl restart nginx', 'service'],
      ['sudo -nu root rm -rf /srv/data', 'file'],
      ['sudo -E -H apt-get install -y curl', 'package'],
      ['doas -n rm /etc/motd', 'file'],
    ];
    expect(cases.map(([c]) => [c, classifyShellCommand(c)])).toEqual(cases);
  });

  it('options taking an argument, per wrapper, short, clustered, attached or long', () => {
    const cases: [string, string | undefined][] = [
      ['timeout -s KILL 5 rm x', 'file'],
      ['timeout --signal KILL -k 2 5s rm x', 'file'],
      ['timeout --signal=KILL 5 rm x', 'file'],
      ['ionice -c 3 rm x', 'file'],
      ['ionice -c3 -n 7 rm x', 'file'],
      ['nice -n 5 rm x', 'file'],
      ['nice -10 rm x', 'file'],
      ['sudo -u root rm x', 'file'],
      ['sudo -uroot rm x', 'file'],
      ['sudo --user=root rm x', 'file'],
      ['sudo --user root rm x', 'file'],
      ['sudo -- rm x', 'file'],
      ['stdbuf -o L rm x', 'file'],
      ['env -u HOME -i LANG=C rm x', 'file'],
      ["env -S 'rm -rf /srv/data'", 'file'],
      ['nohup nice -n 5 ionice -c 3 sudo -n rm x', 'file'],
    ];
    expect(cases.map(([c]) => [c, classifyShellCommand(c)])).toEqual(cases);
  });

  it('what wrappers run that changes nothing stays out', () => {
    const cases: [string, string | undefined][] = [
      ['sudo -n ls /srv', undefined],
      ['timeout -s KILL 5 cat /etc/hosts', undefined],
      ['ionice -c 3 du -sh /srv', undefined],
      ['sudo -u rm ls', undefined],
      ['nice -n 5 uptime', undefined],
    ];
    expect(cases.map(([c]) => [c, classifyShellCommand(c)])).toEqual(cases);
  });
});

/**
 * Programs that run a command line of their own: a shell's or su's `-c` string, eval, xargs, find's actions.
 * Judged by their program name alone, `sudo sh -c 'echo x > /etc/hosts'` was no change.
 */
describe('access report: command lines inside other commands', () => {
  it('sh/bash -c, su -c and eval are read as command lines; xargs as a wrapper; find -delete and -exec', () => {
    const cases: [string, string | undefined][] = [
      ["sudo sh -c 'echo x > /etc/hosts'", 'file'],
      ["sudo sh -c 'echo evil >> /etc/sudoers'", 'file'],
      ["bash -c 'rm -rf /srv/data'", 'file'],
      ["bash -lc 'systemctl restart nginx'", 'service'],
      ["bash -o pipefail -c 'curl -s x | tee /etc/app.conf'", 'file'],
      ['zsh -c "echo \\"on\\" > /etc/feature"', 'file'],
      ["dash -c \"sh -c 'apt-get install -y nmap'\"", 'package'],
      ["su - root -c 'useradd mallory'", 'user'],
      ["su -c 'rm /etc/motd' root", 'file'],
      ["sudo su --command='rm /etc/motd'", 'file'],
      ["eval 'rm -rf /srv/cache'", 'file'],
      ['ls | xargs rm', 'file'],
      ['find . -print0 | xargs -0 -n 1 -P 4 rm -f', 'file'],
      ['xargs -I{} rm {}', 'file'],
      ['find /var/log -delete', 'file'],
      ["find /var/log/audit -type f -name '*.log' -delete", 'file'],
      ['find /srv -name core -exec rm {} \\;', 'file'],
      ['find /etc -name "*.conf" -execdir sed -i s/a/b/ {} +', 'editor'],
      ["find /tmp -exec sh -c 'chmod 777 \"$1\"' _ {} \\;", 'file'],
      ['find / -fprint /tmp/listing', 'file'],
      ["perl -pi -e 's/a/b/' /etc/app.conf", 'editor'],
    ];
    expect(cases.map(([c]) => [c, classifyShellCommand(c)])).toEqual(cases);
  });

  it('what they run that changes nothing stays out', () => {
    const cases: [string, string | undefined][] = [
      ["bash -c 'ls -la /srv'", undefined],
      ["sh -c 'cat /etc/hosts | grep db'", undefined],
      ['bash deploy-check.sh', undefined],
      ['ls | xargs -0 cat', undefined],
      ['find /var/log -type f -name "*.gz"', undefined],
      ['find /srv -exec grep -l secret {} +', undefined],
      ["su - app -c 'uptime'", undefined],
    ];
    expect(cases.map(([c]) => [c, classifyShellCommand(c)])).toEqual(cases);
  });

  it('inline code an interpreter runs, and lines nested too deep, are unclassified rather than no change', () => {
    expect(classifyShellLine("python3 -c 'import os; os.remove(\"/etc/x\")'")).toEqual({ opaque: 'python3 -c: inline code' });
    expect(classifyShellLine("sudo perl -e 'unlink \"/etc/x\"'")).toEqual({ opaque: 'perl -e: inline code' });
    expect(classifyShellLine("node -e 'require(\"fs\").rmSync(\"/srv\", { recursive: true })'")).toEqual({ opaque: 'node -e: inline code' });
    expect(classifyShellLine("sh -c 'ruby -e \"File.delete(1)\"'")).toEqual({ opaque: 'ruby -e: inline code' });
    expect(classifyShellLine("find /srv -exec python3 -c 'pass' {} \\;")).toEqual({ opaque: 'python3 -c: inline code' });
    // A change elsewhere in the line is what the line is.
    expect(classifyShellLine("python3 -c 'pass'; rm /x")).toEqual({ change: 'file' });
    // Scripts run by name are judged like any program; a module run is not inline code.
    expect(classifyShellLine('python3 manage.py check')).toEqual({});
    expect(classifyShellLine('python3 -m json.tool /etc/app.json')).toEqual({});
    let line = 'rm /x';
    for (let i = 0; i < 4; i++) line = `sh -c ${JSON.stringify(line)}`;
    expect(classifyShellLine(line)).toEqual({ change: 'file' });
    expect(classifyShellLine(`sh -c ${JSON.stringify(line)}`)).toEqual({ opaque: 'command lines nested more than 4 deep' });
  });
});
