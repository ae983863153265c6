import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type ssh2 from 'ssh2';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';

/** What the ssh2 client keeps of a channel and its protocol, to send requests its public API will not. */
interface ChannelInternals {
  outgoing: { id: number };
  _callbacks: Array<(failed: boolean) => void>;
}
interface ClientProtocol {
  exec(chan: number, cmd: string, wantReply: boolean): void;
  env(chan: number, key: string, val: string, wantReply: boolean): void;
}

/** Resolves with 'failure'/'success' when the server answers the request, or 'no answer' after `ms`. */
function replyTo(channel: ChannelInternals, ms: number): Promise<'failure' | 'success' | 'no answer'> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('no answer'), ms);
    channel._callbacks.push((failed) => {
      clearTimeout(timer);
      resolve(failed ? 'failure' : 'success');
    });
  });
}

/**
 * A request on a session channel that already runs its command is refused with CHANNEL_FAILURE when the
 * client asked for a reply: ssh2 answers nothing itself once the channel started, and the client would wait.
 */
describe('ssh: requests on a started session channel are answered', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  async function startedExec(c: ssh2.Client, command: string): Promise<ChannelInternals> {
    const stream = await new Promise<ssh2.ClientChannel>((resolve, reject) => c.exec(command, (e, s) => (e ? reject(e) : resolve(s))));
    stream.on('data', () => {});
    stream.stderr.on('data', () => {});
    return stream as unknown as ChannelInternals;
  }

  it('a second exec with want-reply gets CHANNEL_FAILURE and is refused on record', async () => {
    const c = await certClient(w, alice);
    try {
      const channel = await startedExec(c, 'sleep 5; echo first');
      const proto = (c as unknown as { _protocol: ClientProtocol })._protocol;
      const answer = replyTo(channel, 5_000);
      proto.exec(channel.outgoing.id, 'echo second', true);
      expect(await answer).toBe('failure');
      const ev = await w.gw.waitForEvent((e) => e.type === 'ssh.request' && e.details.request === 'exec' && e.details.command === 'echo second');
      expect(ev).toMatchObject({ outcome: 'failure', details: { why: 'the channel already runs a command' } });
    } finally {
      c.end();
    }
  }, 30_000);

  it('an env request with want-reply after the start gets CHANNEL_FAILURE too', async () => {
    const c = await certClient(w, alice);
    try {
      const channel = await startedExec(c, 'sleep 5; echo first');
      const proto = (c as unknown as { _protocol: ClientProtocol })._protocol;
      const answer = replyTo(channel, 5_000);
      proto.env(channel.outgoing.id, 'LANG', 'C', true);
      expect(await answer).toBe('failure');
    } finally {
      c.end();
    }
  }, 30_000);
});
