import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/tmp.ts';
import { runCliCaptured } from '../support/cli.ts';
import { POLICY } from '../access/support.ts';

/**
 * The reason of an access request is typed by the requester and read by the approver in `vigil access list`
 * and `access show`. A line break or a CR in it must be shown escaped: otherwise the requester forges, under
 * their own request, a second request line the approver reads as another record.
 */

// A forged line: what the approver would read as a second, harmless request.
const FORGED = '01JFAKEFAKEFAKEFAKEFAKEFAK  pending  bob → dev (pg-stage)';
// Line breaks are allowed in a reason (C1 controls and bidi overrides are refused when it is filed:
// test/access/free-text.test.ts); a CR would draw over the start of the line.
const REASON = `INC-1\r\n${FORGED}`;

describe('access list / access show: the requester\'s text cannot forge lines', () => {
  let config: string;
  beforeAll(() => {
    const base = tempDir();
    config = path.join(base, 'vigil.yaml');
    fs.writeFileSync(config, YAML.stringify({ data_dir: path.join(base, 'data'), ...POLICY }));
  });
  const vigil = (...args: string[]) => runCliCaptured([...args, '--config', config]);

  it('shows the reason escaped, on one line', async () => {
    const filed = await vigil('access', 'request', '--role', 'prod-ssh', '--reason', REASON, '--ttl', '30m', '--by', 'mallory', '--json');
    expect(filed.code, filed.err).toBe(0);
    const id = (JSON.parse(filed.out) as { id?: string; request?: { id: string } }).id ?? (JSON.parse(filed.out) as { request: { id: string } }).request.id;
    const escaped = 'INC-1\\x0d\\x0a01JFAKEFAKEFAKEFAKEFAKEFAK  pending  bob → dev (pg-stage)';

    const list = await vigil('access', 'list');
    expect(list.code, list.err).toBe(0);
    const lines = list.out.split('\n');
    expect(lines.filter((l) => l.startsWith('01JFAKE'))).toEqual([]);
    expect(lines).toContain(`    reason: ${escaped}`);
    expect(list.out).not.toMatch(/[\r\u0080-\u009f\u202e]/);

    const shown = await vigil('access', 'show', id);
    expect(shown.code, shown.err).toBe(0);
    expect(shown.out.split('\n')).toContain(`reason:      ${escaped}`);
    expect(shown.out).not.toMatch(/[\r\u0080-\u009f\u202e]/);
  });
});
