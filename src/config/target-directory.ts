import type { TargetConfig } from './schema.ts';

/** The configured targets by protocol and name; replaced as a whole when a config reload changes them. */
export interface TargetDirectory {
  /** The target called `name` of `protocol`, or undefined. */
  find(name: string, protocol: string): TargetConfig | undefined;
  all(): TargetConfig[];
}

export function targetDirectory(targets: TargetConfig[]): TargetDirectory {
  const byKey = new Map(targets.map((t) => [`${t.protocol}/${t.name}`, t]));
  return {
    find: (name, protocol) => byKey.get(`${protocol}/${name}`),
    all: () => targets,
  };
}
