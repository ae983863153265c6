import fs from 'node:fs';
import type { Command, CommandArgs } from './command.ts';

type Described = Omit<Command, 'run'> & { module: string };

/**
 * The command table. From the sources it is what `fromSources` returns (app/commands.ts: the core's commands
 * and the proxies'). Compiled (dist/), it is the manifest `npm run build` wrote from that same table:
 * descriptions up front, each command's module imported only when that command runs, so help, completion
 * and a single command start without loading all the others.
 */
export async function loadCommandTable(fromSources: () => Promise<Command[]>): Promise<Command[]> {
  const manifest = new URL('./commands.manifest.json', import.meta.url);
  if (!import.meta.url.endsWith('.js') || !fs.existsSync(manifest)) return fromSources();
  const described = JSON.parse(fs.readFileSync(manifest, 'utf8')) as Described[];
  return described.map(({ module, ...d }) => ({
    ...d,
    async run(args: CommandArgs) {
      return (await definedIn(new URL(module, import.meta.url).href, d.name)).run(args);
    },
  }));
}

async function definedIn(moduleUrl: string, name: string): Promise<Command> {
  const mod = (await import(moduleUrl)) as Record<string, unknown>;
  for (const value of Object.values(mod)) {
    for (const c of Array.isArray(value) ? value : [value]) {
      if (c && typeof c === 'object' && (c as Command).name === name && typeof (c as Command).run === 'function') return c as Command;
    }
  }
  throw new Error(`command "${name}" not found in ${moduleUrl} (rebuild with npm run build)`);
}
