import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../app/config.ts';
import { ConfigError } from '../../src/errors.ts';
import { expectErrors, type FuzzTarget } from '../engine/target.ts';
import { scratchDir } from '../engine/scratch.ts';

const dir = scratchDir('config');
const file = path.join(dir, 'vigil.yaml');

/**
 * A config file's text through the loader (YAML parse + schema). Whatever the text, the only failure
 * is a ConfigError naming the problem; no YAML or zod exception escapes raw.
 */
export const target: FuzzTarget = {
  name: 'config',
  covers: ['src/config/'],
  maxLen: 8192,
  dictionary: ['targets:\n', '  - name: db\n', '    protocol: postgres\n', '    protocol: mysql\n', '    protocol: ssh\n', '    port: ', 'listen:\n', 'roles:\n', 'redaction:\n', '&a ', '*a', '<<: *a\n', '!!binary ', '{', '[', '~', '0x', '1e309', '"\\u0000"', '--- \n', '? '],
  run(data) {
    fs.writeFileSync(file, data);
    expectErrors(() => loadConfig({ configPath: file, dataDir: dir, checkFiles: false }), ConfigError);
  },
};
