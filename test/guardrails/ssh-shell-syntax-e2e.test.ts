import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { tempDir } from '../support/tmp.ts';

/**
 * The bash forms of ssh-shell-syntax.test.ts through stock ssh into the real sshd, whose login shell
 * (bash) runs what it is sent. The rule protects a marker directory of this test: had a form got past
 * the guardrail, bash would have removed it.
 */

let w: SshWorld;
let olga: IssuedFiles;
let dir: string;
let data: string;
let marker: string;

beforeAll(async () => {
  dir = tempDir('vigil-guard-syntax-');
  data = path.join(dir, 'data');
  marker = path.join(data, 'marker');
  fs.mkdirSync(data);
  fs.writeFileSync(marker, 'still here\n');
  w = await startWorld({
    config: {
      roles: [{ name: 'oncall', targets: ['*'], logins: ['*'] }],
      guardrails: [{ name: 'keep-data', targets: ['*'], roles: ['oncall'], ssh: { block_commands: [`rm -rf ${data}`] } }],
    },
  });
  olga = await w.issue({ user: 'olga', roles: ['oncall'] });
}, 60_000);

afterAll(async () => {
  await w?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

const ssh = (command: string) => w.run('ssh', [...w.opts(olga), `${w.sshd.user}@web1@127.0.0.1`, command]);

describe('ssh exec guardrails on bash syntax, with stock ssh into a real bash', () => {
  it('bash runs what it is sent: the target really expands braces and $\'…\'', async () => {
    const r = await ssh(`echo ${dir}/{data,} $'\\057'x; ls ${data}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${data} ${dir}/ /x\nmarker\n`);
  });

  it('reserved words, $\'…\' escapes, braces, process and command substitution never reach bash; the data survives', async () => {
    const rel = data.slice(1);
    const forms = [
      `{ rm -rf ${data}; }`,
      `if true; then rm -rf ${data}; fi`,
      `while true; do rm -rf ${data}; break; done`,
      `! rm -rf ${data}`,
      `rm -rf $'\\057'${rel}`,
      `rm -rf ${dir}/{data,}`,
      `cat <(rm -rf ${data})`,
      `: >$(rm\${IFS}-rf\${IFS}${data})`,
      `rm -rf ${data.slice(0, -1)}?`,
    ];
    for (const command of forms) {
      const r = await ssh(command);
      expect(r.code, command).toBe(1);
      expect(r.stderr, command).toContain('guardrail "keep-data"');
      expect(fs.existsSync(marker), command).toBe(true);
    }
    for (const command of forms) await w.gw.waitForEvent((e) => e.type === 'guardrail.blocked' && e.details?.command === command);
  });

  it('what bash cannot be known to run is refused as unparsable', async () => {
    const command = `echo \${x:-$(rm -rf ${data})}`;
    const r = await ssh(command);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unparsable');
    expect(fs.existsSync(marker)).toBe(true);
  });
});
