/**
 * Entry point of an out-of-process test gateway (see gateway-child-process.ts): start the gateway from the
 * JSON spec in argv[2], optionally issue credentials into a directory, then print one READY line with
 * the bound ports and the SSH host key. Runs until killed (SIGTERM: graceful close).
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseConfig } from '../../src/config/load.ts';
import { startGateway } from '../../src/gateway/gateway.ts';
import { silentLogger, createLogger } from '../../src/log.ts';
import { publicKeyLine } from '../../proxies/ssh/known-hosts.ts';
import type { IssueRequest } from '../../src/identity/types.ts';

interface ChildSpec {
  config: Record<string, unknown>;
  base: string;
  issue?: { request: IssueRequest; dir: string };
}

const spec = JSON.parse(process.argv[2]) as ChildSpec;
const dataDir = path.join(spec.base, 'data');
const parsed = parseConfig({ data_dir: dataDir, ...spec.config }, spec.base);
const log = process.env.VIGIL_TEST_LOG ? createLogger(process.env.VIGIL_TEST_LOG) : silentLogger();
const gw = await startGateway({ config: parsed, dataDir, file: undefined }, { log });
if (spec.issue && !fs.existsSync(path.join(spec.issue.dir, 'done'))) {
  const { request, dir } = spec.issue;
  const creds = await gw.services.identity.issue(request);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const write = (name: string, content: string, mode = 0o600) => fs.writeFileSync(path.join(dir, name), content.endsWith('\n') ? content : content + '\n', { mode });
  write('key', creds.sshPrivateKey ?? '');
  write('key-cert.pub', creds.sshCertificate, 0o644);
  write('done', '');
}
process.on('SIGTERM', () => void gw.close().finally(() => process.exit(0)));
process.stdout.write(`READY ${JSON.stringify({ ports: gw.ports, sshHostKey: publicKeyLine(gw.services.identity.sshHostKey()) })}\n`);
