import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';
import { holdDurability } from '../support/durability.ts';

/**
 * A TCP destination whose handshake never completes: a listener that accepts nothing, its one-slot
 * accept queue already taken, so the kernel drops further SYNs and the target's connect() stays pending.
 */
async function unansweredDestination(): Promise<{ port: number; stop: () => void }> {
  const py = spawn('python3', ['-c', "import socket,sys,time\ns=socket.socket()\ns.bind(('127.0.0.1',0))\ns.listen(0)\nprint(s.getsockname()[1],flush=True)\ntime.sleep(600)"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    py.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    py.once('exit', () => reject(new Error('python listener exited')));
  });
  // Fill the accept queue (backlog 0 holds one connection).
  const filler = net.connect(port, '127.0.0.1');
  filler.on('error', () => {});
  await new Promise((r) => filler.once('connect', r));
  return {
    port,
    stop: () => {
      filler.destroy();
      (py as ChildProcess).kill('SIGKILL');
    },
  };
}

describe('ssh direct-tcpip: every forward has an outcome on record before session.end', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  let dest: { port: number; stop: () => void };
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
    dest = await unansweredDestination();
  }, 30_000);
  afterAll(async () => {
    dest?.stop();
    await w?.stop();
  });

  it('a forward still waiting for the target to connect when the client leaves is recorded as failed before session.end', async () => {
    const c = await certClient(w, alice);
    c.on('error', () => {});
    c.forwardOut('127.0.0.1', 40000, '127.0.0.1', dest.port, () => {});
    const open = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.details.state === 'open' && e.details.destination === `127.0.0.1:${dest.port}`);
    // The target is now trying to connect (it never will); the client goes away meanwhile.
    c.end();
    const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === open.session_id);
    const outcomeOf = () => w.gw.events.find((e) => e.type === 'ssh.forward' && e.details.forward === open.details.forward && e.details.state !== 'open');
    await waitFor(() => outcomeOf() !== undefined, 15_000, 'the forward outcome');
    const outcome = outcomeOf()!;
    const ids = w.gw.events.filter((e) => e.session_id === open.session_id).map((e) => e.id);
    expect(ids.indexOf(outcome.id), 'the forward outcome precedes session.end').toBeLessThan(ids.indexOf(end.id));
    // The cause is the session ending, not the destination (which the target was still trying).
    expect(outcome).toMatchObject({ outcome: 'failure', details: { destination: `127.0.0.1:${dest.port}`, reason: 'the session is ending' } });
  }, 60_000);
});

describe('ssh direct-tcpip (strict): a forward whose start record is still being made durable', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld({ config: { audit: { durability: 'strict' } } });
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('when the client leaves before the record is durable, the forward fails on record before session.end', async () => {
    const c = await certClient(w, alice);
    c.on('error', () => {});
    const held = holdDurability(w.gw.gw.services.events);
    try {
      c.forwardOut('127.0.0.1', 40000, '127.0.0.1', 9, () => {});
      // The open record reaches the bus (it is only held from counting as durable).
      const open = await w.gw.waitForEvent((e) => e.type === 'ssh.forward' && e.details.state === 'open' && e.details.destination === '127.0.0.1:9');
      c.end();
      const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === open.session_id);
      held.restore();
      held.release();
      const outcomeOf = () => w.gw.events.find((e) => e.type === 'ssh.forward' && e.details.forward === open.details.forward && e.details.state !== 'open');
      await waitFor(() => outcomeOf() !== undefined, 15_000, 'the forward outcome');
      const ids = w.gw.events.filter((e) => e.session_id === open.session_id).map((e) => e.id);
      expect(ids.indexOf(outcomeOf()!.id), 'the forward outcome precedes session.end').toBeLessThan(ids.indexOf(end.id));
      expect(outcomeOf()).toMatchObject({ outcome: 'failure', details: { reason: 'the session is ending' } });
    } finally {
      held.restore();
      held.release();
    }
  }, 60_000);
});
