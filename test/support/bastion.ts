import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

/**
 * The bastion example of deploy/compose/ as tests see it: its vigil.yaml, its docker-compose.yml, and
 * the environment its haproxy.cfg reads. The HAProxy scenario test runs that haproxy.cfg as it is (only
 * the environment differs), and its replicas start from that vigil.yaml, so the example cannot drift
 * from what is tested.
 */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const COMPOSE_DIR = path.join(REPO, 'deploy/compose');
export const HAPROXY_CFG = path.join(COMPOSE_DIR, 'haproxy.cfg');

export const readYaml = (file: string): any => YAML.parse(fs.readFileSync(file, 'utf8'), { merge: true });

/** The replicas' config of the example (deploy/compose/vigil.yaml), as a YAML-shaped object. */
export const bastionVigilConfig = (): Record<string, any> => readYaml(path.join(COMPOSE_DIR, 'vigil.yaml'));

/** The parsed docker-compose.yml (anchors and `<<` merges resolved). */
export const bastionCompose = (): Record<string, any> => readYaml(path.join(COMPOSE_DIR, 'docker-compose.yml'));

/** Environment variables haproxy.cfg reads (`"${NAME}"`), in order of first use. */
export function haproxyCfgVariables(text = fs.readFileSync(HAPROXY_CFG, 'utf8')): string[] {
  const names = [...text.replace(/#.*$/gm, '').matchAll(/\$\{([A-Z0-9_]+)\}/g)].map((m) => m[1]);
  return [...new Set(names)];
}

/** Listener sections of vigil.yaml and the haproxy.cfg port variable each one's frontend binds. */
export const LISTENER_PORT_VARS = { ssh: 'VIGIL_SSH_PORT', postgres: 'VIGIL_PG_PORT', mysql: 'VIGIL_MYSQL_PORT', api: 'VIGIL_API_PORT' } as const;
export type ListenerName = keyof typeof LISTENER_PORT_VARS;
