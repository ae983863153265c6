import { describe, it, expect } from 'vitest';
import { classifyShellCommand } from '../../recorder/reports/classify-ssh.ts';

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
