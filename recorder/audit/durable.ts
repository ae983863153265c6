import fsp from 'node:fs/promises';
import path from 'node:path';

/** fsync a directory, so a file just created or renamed in it survives a crash. */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/** Write the whole of several buffers with writev (one call when it is not short). */
export async function writeAllv(h: fsp.FileHandle, bufs: Buffer[]): Promise<void> {
  if (bufs.length === 1) return writeAll(h, bufs[0]);
  let rest = bufs.filter((b) => b.length > 0);
  while (rest.length > 0) {
    let { bytesWritten } = await h.writev(rest);
    if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    // Drop what was written; a short write leaves the rest of one buffer and the ones after it.
    let i = 0;
    while (i < rest.length && bytesWritten >= rest[i].length) bytesWritten -= rest[i++].length;
    rest = rest.slice(i);
    if (bytesWritten > 0) rest[0] = rest[0].subarray(bytesWritten);
  }
}

/** Write the whole buffer (a write may be short). */
export async function writeAll(h: fsp.FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await h.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    off += bytesWritten;
  }
}

/**
 * Write a small file atomically and durably: a dot-prefixed temp file without the final suffix (so no
 * reader ever picks up a file still being written), fsync, rename over the target.
 */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.partial`);
  const h = await fsp.open(tmp, 'w', 0o600);
  try {
    await writeAll(h, Buffer.from(text));
    await h.sync();
  } finally {
    await h.close();
  }
  await fsp.rename(tmp, file);
}
