import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'proxies/**/*.test.ts', 'recorder/**/*.test.ts', 'src/**/*.test.ts'],
    // Integration tests start real sshd / PostgreSQL / MariaDB; give them room on a 2-core machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    // Spawned `bin/vigil.js` runs the sources under test, never a dist/ left over from an earlier build.
    env: { VIGIL_FROM_SOURCE: '1' },
  },
});
