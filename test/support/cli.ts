import { Writable } from 'node:stream';
import { runCli } from '../../app/main.ts';

export interface CliResult {
  code: number;
  out: string;
  err: string;
}

/** Run the `vigil` CLI in-process, capturing what it writes; `tty` makes stderr (`ttyOut`: stdout) look like a terminal. */
export async function runCliCaptured(args: string[], opts: { tty?: boolean; ttyOut?: boolean } = {}): Promise<CliResult> {
  const o: Buffer[] = [];
  const e: Buffer[] = [];
  const w = (a: Buffer[]) => new Writable({ write(c, _x, cb) { a.push(Buffer.from(c)); cb(); } });
  const err = w(e);
  if (opts.tty) Object.assign(err, { isTTY: true });
  const out = w(o);
  if (opts.ttyOut) Object.assign(out, { isTTY: true });
  const code = await runCli(args, out, err);
  return { code, out: Buffer.concat(o).toString(), err: Buffer.concat(e).toString() };
}
