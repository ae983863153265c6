import fs from 'node:fs';
import path from 'node:path';
import { parseSegmentName, metaName, type SegmentMeta } from './record.ts';

/** Segment file names of an audit directory, in chain order (by first sequence number). */
export function listSegments(dir: string): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names.filter((n) => parseSegmentName(n)).sort();
}

/** The sealed-segment sidecar, or undefined when missing or unreadable (the reader then scans the segment). */
export function readSegmentMeta(dir: string, segment: string): SegmentMeta | undefined {
  try {
    const m = JSON.parse(fs.readFileSync(path.join(dir, metaName(segment)), 'utf8')) as SegmentMeta;
    return typeof m.min_time === 'string' && typeof m.max_time === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Split a segment's text into complete lines and a trailing partial line (bytes after the last newline,
 * i.e. a write torn by a crash). Returns the byte offset where the torn part starts.
 */
export function splitSegment(text: string): { lines: string[]; torn: string } {
  const end = text.lastIndexOf('\n');
  const torn = text.slice(end + 1);
  const lines = end < 0 ? [] : text.slice(0, end).split('\n');
  return { lines, torn };
}
