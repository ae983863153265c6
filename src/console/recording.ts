import type http from 'node:http';
import { pipeline } from 'node:stream/promises';
import type { RecordingSource } from '../../recorder/types.ts';

/**
 * Stream a recording (asciicast file) with HTTP Range support: the whole file is never read into memory,
 * the first bytes leave at once, and a player (or a resumed download) can ask for any part of it.
 * Returns the byte range served, for the audit event.
 */
export async function streamCast(source: RecordingSource, req: http.IncomingMessage, res: http.ServerResponse, headers: Record<string, string>): Promise<{ start: number; end: number; size: number }> {
  // Local file or object storage (ranged GETs): streamed either way.
  const size = source.size;
  let start = 0;
  let end = size - 1;
  let status = 200;
  const range = req.headers.range;
  if (typeof range === 'string') {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    const a = m?.[1] ? Number(m[1]) : undefined;
    const b = m?.[2] ? Number(m[2]) : undefined;
    if (m && a !== undefined) (start = a), (end = b !== undefined ? Math.min(b, size - 1) : size - 1);
    else if (m && b !== undefined) (start = Math.max(0, size - b)), (end = size - 1);
    if (!m || (a === undefined && b === undefined) || start > end || start >= size) {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` });
      res.end();
      return { start: 0, end: -1, size };
    }
    status = 206;
  }
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/x-asciicast; charset=utf-8',
    'content-length': String(end - start + 1),
    'accept-ranges': 'bytes',
    'cache-control': 'private, no-store',
    ...(status === 206 ? { 'content-range': `bytes ${start}-${end}/${size}` } : {}),
  });
  if (req.method === 'HEAD' || size === 0) {
    res.end();
    return { start, end, size };
  }
  await pipeline(source.read(start, end), res);
  return { start, end, size };
}
