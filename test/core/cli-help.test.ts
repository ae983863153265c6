import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../app/commands.ts';
import { describeOptions } from '../../src/cli/help.ts';
import { runCliCaptured } from '../support/cli.ts';

const ESC = '\x1b[';

describe('vigil help, generated from the command table', () => {
  it('every option of every command has a meaning, and `--help` lists each with it, plus an example', async () => {
    for (const c of COMMANDS) {
      const r = await runCliCaptured([...c.name.split(' '), '--help']);
      expect(r.code, c.name).toBe(0);
      for (const o of describeOptions(c)) {
        expect(o.help, `vigil ${c.name} --${o.name} has no help text`).not.toBe('');
        const line = r.out.split('\n').find((l) => l.includes(`--${o.name}`) && l.includes(o.help));
        expect(line, `vigil ${c.name} --help shows --${o.name} with its meaning`).toBeDefined();
      }
      expect(c.examples?.length, `${c.name} has an example`).toBeGreaterThan(0);
      expect(r.out).toContain('Examples:');
      expect(r.out).toContain(`$ vigil ${c.name}`);
    }
  });

  it('`vigil audit --help` lists the audit subcommands; a bare group is a usage error with the same list', async () => {
    const r = await runCliCaptured(['audit', '--help']);
    expect(r.code).toBe(0);
    const audit = COMMANDS.filter((c) => c.name.startsWith('audit '));
    expect(audit.length).toBeGreaterThan(3);
    for (const c of audit) expect(r.out).toMatch(new RegExp(`^  ${c.name.slice(6)}\\s`, 'm'));
    expect(r.out).not.toContain('unknown command');
    const bare = await runCliCaptured(['access']);
    expect(bare.code).toBe(2);
    expect(bare.err).toContain('access request');
    const wrong = await runCliCaptured(['audit', 'frobnicate']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain('unknown subcommand "frobnicate"');
  });

  it('`vigil help <command>` is the same as `<command> --help`', async () => {
    const a = await runCliCaptured(['help', 'audit', 'search']);
    const b = await runCliCaptured(['audit', 'search', '--help']);
    expect(a.code).toBe(0);
    expect(a.out).toBe(b.out);
    expect((await runCliCaptured(['help', 'audit'])).out).toContain('verify-bundle');
    expect((await runCliCaptured(['help', 'nope'])).code).toBe(2);
  });

  it('every listing command takes --json', () => {
    const listings = COMMANDS.filter((c) => / list$/.test(c.name) || ['audit search', 'audit tail'].includes(c.name));
    expect(listings.length).toBeGreaterThanOrEqual(6);
    for (const c of listings) expect(c.options?.json, `${c.name} --json`).toBeDefined();
  });

  it('the main help documents the exit codes', async () => {
    const r = await runCliCaptured(['--help']);
    expect(r.out).toContain('Exit codes:');
    expect(r.out).toMatch(/^ {2}2 {2}usage error/m);
  });
});

describe('vigil completion', () => {
  it('bash and zsh scripts name every command and every option, and bash accepts the script', async () => {
    for (const shell of ['bash', 'zsh']) {
      const r = await runCliCaptured(['completion', shell]);
      expect(r.code, shell).toBe(0);
      for (const c of COMMANDS) {
        expect(r.out, `${shell}: ${c.name}`).toContain(`'${c.name}') opts='`);
        for (const o of describeOptions(c)) expect(r.out).toMatch(new RegExp(`'${c.name}'\\) opts='[^']*--${o.name}\\b`));
      }
    }
    expect((await runCliCaptured(['completion', 'fish'])).code).toBe(2);
    // Real bash: load the script and ask it what follows `vigil audit s` and `vigil audit search --li`.
    const script = (await runCliCaptured(['completion', 'bash'])).out;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vigil-compl-'));
    try {
      fs.writeFileSync(path.join(dir, 'vigil.bash'), script);
      const probe = (words: string[]) =>
        spawnSync('bash', ['-c', `source ${path.join(dir, 'vigil.bash')}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _vigil; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
      expect(probe(['vigil', 'audit', 's']).stdout.split('\n').filter(Boolean).sort()).toEqual(['search']);
      expect(probe(['vigil', 'audit', 'search', '--li']).stdout.trim()).toBe('--limit');
      expect(probe(['vigil', 'acc']).stdout.trim()).toBe('access');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('colours', () => {
  const saved = process.env.NO_COLOR;
  afterEach(() => {
    if (saved === undefined) delete process.env.NO_COLOR;
    else process.env.NO_COLOR = saved;
  });

  it('only on a terminal, and never with NO_COLOR', async () => {
    delete process.env.NO_COLOR;
    expect((await runCliCaptured(['audit', 'search', '--help'], { ttyOut: true })).out).toContain(ESC);
    expect((await runCliCaptured(['audit', 'search', '--help'])).out).not.toContain(ESC);
    expect((await runCliCaptured(['frobnicate'], { tty: true })).err).toContain(ESC);
    process.env.NO_COLOR = '1';
    expect((await runCliCaptured(['audit', 'search', '--help'], { ttyOut: true })).out).not.toContain(ESC);
    expect((await runCliCaptured(['frobnicate'], { tty: true })).err).not.toContain(ESC);
  });
});
