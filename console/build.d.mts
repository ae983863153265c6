/** Types of console/build.mjs for TypeScript callers (the tests' ensureConsoleBuilt). */
export interface ConsoleBuildManifest {
  source_hash: string;
  built_at: string;
  files: string[];
}
export const DEFAULT_OUT: string;
export function sourceHash(): string;
export function buildConsole(out?: string): Promise<ConsoleBuildManifest>;
export function ensureConsoleBuilt(out?: string): Promise<ConsoleBuildManifest>;
