/**
 * The composition root and CLI entry (`tsx app/main.ts`, bin/vigil.js): wires the core (src/) to the
 * protocol proxies (proxies/). src/ never imports proxies/ or app/ (test/core/layering.test.ts); only this
 * folder knows both.
 */
import { runCli as runCore, type CliApp } from '../src/cli/main.ts';

/** Imported lazily: `vigil --help` and completion load no command module and no proxy. */
export const APP: CliApp = {
  commands: async () => (await import('./commands.ts')).COMMANDS,
  proxies: async () => (await import('../proxies/registry.ts')).PROXIES,
};

export function runCli(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  return runCore(argv, out, err, APP);
}

// Run when executed directly (`tsx app/main.ts`, as `npm start` does); bin/vigil.js calls runCli itself.
if (/app[\\/]main\.[jt]s$/.test(process.argv[1] ?? '')) {
  runCli(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
