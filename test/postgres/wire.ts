import { F, cstr, int16, int32, encodeMessage } from '../../proxies/postgres/frontend.ts';

/**
 * Frontend messages built by hand, for tests that drive the protocol as no stock driver would (pipelines
 * with errors in the middle, names reused, Syncs inside COPY). Bind values are sent as text.
 */
export const msg = (type: number, ...parts: Buffer[]) => encodeMessage(type, Buffer.concat(parts));
export const parse = (name: string, sql: string) => msg(F.Parse, cstr(name), cstr(sql), int16(0));
export const bind = (portal: string, stmt: string, vals: string[] = []) =>
  msg(F.Bind, cstr(portal), cstr(stmt), int16(0), int16(vals.length), ...vals.flatMap((v) => [int32(Buffer.byteLength(v)), Buffer.from(v)]), int16(0));
export const exec = (portal: string, max = 0) => msg(F.Execute, cstr(portal), int32(max));
export const close = (kind: 'S' | 'P', name: string) => msg(F.Close, Buffer.from(kind), cstr(name));
export const query = (sql: string) => msg(F.Query, cstr(sql));
export const copyData = (text: string) => msg(F.CopyData, Buffer.from(text));
export const copyDone = msg(F.CopyDone);
export const flush = msg(F.Flush);
export const sync = msg(F.Sync);
