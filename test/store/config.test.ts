import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../app/config.ts';
import { tempDir } from '../support/tmp.ts';

describe('store config', () => {
  const parse = (store?: unknown) => parseConfig(store === undefined ? {} : { store }, tempDir());

  it('defaults to sqlite; postgres takes the URL by reference and a schema (default vigil)', () => {
    expect(parse().store).toEqual({ kind: 'sqlite' });
    expect(parse({ kind: 'postgres', url: { env: 'VIGIL_STORE_URL' } }).store).toEqual({ kind: 'postgres', url: { env: 'VIGIL_STORE_URL' }, schema: 'vigil' });
  });

  it('refuses an inline URL (it holds the password), a bad schema name and unknown kinds', () => {
    let inline: Error | undefined;
    try {
      parse({ kind: 'postgres', url: 'postgres://u:s3cr3t@db/vigil' });
    } catch (e) {
      inline = e as Error;
    }
    expect(inline?.message).toMatch(/store\.url/);
    expect(inline?.message).not.toContain('s3cr3t');
    expect(() => parse({ kind: 'postgres', url: { env: 'X' }, schema: 'Bad-Name' })).toThrow(/store\.schema/);
    expect(() => parse({ kind: 'etcd' })).toThrow(/store/);
  });
});
