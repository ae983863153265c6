import { defineConfig } from 'vite';

/**
 * The web console bundle (served by the API server under /console/). Everything is bundled from
 * node_modules (Preact, asciinema-player with its CSS and WebAssembly): nothing is loaded from a CDN.
 * Hashed file names let the server cache assets for a year; console/build.mjs precompresses them.
 */
export default defineConfig({
  root: import.meta.dirname,
  base: '/console/',
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: '../dist/console',
    emptyOutDir: true,
    assetsDir: 'assets',
    // Inline nothing as data: URLs, so CSP needs no data: for scripts and every asset is a cacheable file.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: 'es2022',
  },
});
