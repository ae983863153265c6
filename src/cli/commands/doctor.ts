import type { Command } from '../command.ts';
import { UsageError, stringOpt } from '../command.ts';
import { parseSize } from '../../config/units.ts';

/** `vigil doctor`: is this setup ready to run (or why is it not), with what to do for each problem. */
export const doctorCommand: Command = {
  name: 'doctor',
  summary: 'Check the setup: config, listener ports, backends, secrets, clock, disk, permissions, CA; says what to fix.',
  usage:
    '[--config PATH] [--data DIR] [--min-free SIZE] [--timeout MS] [--json]\n\n' +
    '  Each check prints OK or FAIL with what it found, and for a failure what to do. Backends are reached over TCP\n' +
    '  and greeted where it is cheap (SSH banner, PostgreSQL SSLRequest, MySQL greeting); password references are\n' +
    '  checked for being set or readable, never shown. Exit code 0 when every check passed, 1 otherwise.',
  options: {
    'min-free': { type: 'string', arg: 'SIZE', help: 'free space the data dir needs (default 1GiB)' },
    timeout: { type: 'string', arg: 'MS', help: 'per backend connection (default 3000)' },
    json: { type: 'boolean' },
  },
  examples: ['doctor --config vigil.yaml', 'doctor --config /etc/vigil/vigil.yaml --json'],
  async run(args) {
    const minFree = parseSize(stringOpt(args.values, 'min-free') ?? '1GiB');
    if (minFree === undefined) throw new UsageError('--min-free: expected a size like 1GiB or 500MiB');
    const timeoutMs = Number(stringOpt(args.values, 'timeout') ?? 3000);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError('--timeout: expected milliseconds');
    const { runDoctor } = await import('../../doctor/checks.ts');
    const results = await runDoctor({ configPath: args.configPath, dataDir: args.dataDir, minFreeBytes: minFree, timeoutMs, proxies: args.proxies });
    const failed = results.filter((r) => !r.ok).length;
    if (args.values.json) {
      args.out.write(JSON.stringify({ ok: failed === 0, checks: results }) + '\n');
    } else {
      for (const r of results) {
        args.out.write(`${r.ok ? 'OK  ' : 'FAIL'}  ${r.check.padEnd(11)} ${r.name}: ${r.detail}\n`);
        if (r.fix) args.out.write(`      ${''.padEnd(11)} fix: ${r.fix}\n`);
      }
      args.out.write(failed ? `\n${failed} of ${results.length} checks failed\n` : `\nall ${results.length} checks passed\n`);
    }
    return failed ? 1 : 0;
  },
};
