import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { REFUSALS_RECORDED_EACH } from '../../proxies/ssh/session-channel.ts';

/**
 * Channel requests vigil does not relay are refused on record, including those ssh2 refuses on its own
 * (a BREAK from OpenSSH's `~B` escape); a flood of them is summarised, not one event each.
 */
describe('ssh: refused channel requests are on record', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('BREAK requests (ssh -tt, ~B) are refused on record; a flood of them is summarised in one event', async () => {
    const breaks = REFUSALS_RECORDED_EACH + 9;
    // Each `~B` at the start of a line makes the stock client send a `break` channel request.
    const r = await w.run('ssh', [...w.opts(alice, ['-tt']), 'web1@127.0.0.1', 'sleep 2; echo done'], '~B\r'.repeat(breaks));
    expect(r.stdout).toContain('done');
    const exec = await w.gw.waitForEvent((e) => e.type === 'ssh.exec' && e.details.command === 'sleep 2; echo done');
    await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === exec.session_id);
    const refused = w.eventsOf('ssh.request', (e) => e.session_id === exec.session_id && e.outcome === 'failure');
    const oneByOne = refused.filter((e) => e.details.request === 'break');
    expect(oneByOne).toHaveLength(REFUSALS_RECORDED_EACH);
    expect(oneByOne[0]!.details).toMatchObject({ channel: exec.details.channel, why: 'vigil does not relay this channel request' });
    const summary = refused.filter((e) => e.details.refused !== undefined);
    expect(summary).toHaveLength(1);
    expect(summary[0]!.details).toMatchObject({ refused: breaks, unrecorded: breaks - REFUSALS_RECORDED_EACH });
  }, 60_000);
});
