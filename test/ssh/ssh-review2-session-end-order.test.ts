import ssh2 from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startWorld, type SshWorld } from './harness.ts';
import { certClient } from './cert-client.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * session.end comes after every command record of its session, also when the gateway's event loop is
 * starved while a pty session closes: the terminal emulator then lags behind the session's last output,
 * and the last line's record used to be written after session.end (the end waited 2 s, the emulator longer).
 * The gateway runs in this process, so the test starves its loop itself (a busy timer) and makes the last
 * output slow to parse (insert-line on a large screen), with the shell's `exit` behind it.
 */
describe('ssh pty session: session.end after the last command record', () => {
  let w: SshWorld;
  let alice: IssuedFiles;
  beforeAll(async () => {
    w = await startWorld();
    alice = await w.issue();
  }, 30_000);
  afterAll(async () => {
    await w?.stop();
  });

  it('on a starved event loop, every ssh.command of the session precedes its session.end', async () => {
    const c = await certClient(w, alice);
    const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
      // The largest screen vigil takes: an insert-line there moves 500 rows of 1000 cells.
      c.shell({ term: 'xterm', cols: 1000, rows: 500 }, (err, s) => (err ? reject(err) : resolve(s))),
    );
    let out = '';
    ch.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
    const until = (re: RegExp, what: string) => waitFor(() => re.test(out), 15_000, what).catch((e: Error) => {
      throw new Error(`${e.message}; the client saw ${JSON.stringify(out.slice(-300))}`);
    });

    ch.write("PS1='rdy$ '\r");
    await until(/rdy\$ $/, 'the prompt');
    const first = await w.gw.waitForEvent((e) => e.type === 'ssh.command' && e.details.command === "PS1='rdy$ '", 15_000);
    const sid = first.session_id;
    // ~270 KB of insert-line: seconds of work for the emulator, nothing on the user's screen.
    ch.write(`yes "$(printf '\\033[L')" | head -n 90000 | tr -d '\\n'; echo heavy-$((1+1))\r`);
    await until(/heavy-2\r\n(.|\r|\n)*rdy\$ $/, 'the end of the heavy output');

    // From here the loop is starved: each turn is held 200 ms (the emulator parses 12 ms of a turn), until
    // the session has ended.
    const sessionEnded = () => w.gw.events.some((e) => e.type === 'session.end' && e.session_id === sid);
    const hog = setInterval(() => {
      if (sessionEnded()) return;
      const end = Date.now() + 200;
      while (Date.now() < end);
    }, 0);
    try {
      ch.write('exit\r');
      await closed;
      c.end();
      await waitFor(sessionEnded, 30_000, 'session.end');
    } finally {
      clearInterval(hog);
    }
    // Time for the records the emulator makes once it caught up (without the fix: after session.end).
    const commandsOf = () => w.gw.events.filter((e) => e.session_id === sid && e.type === 'ssh.command');
    await waitFor(() => commandsOf().length >= 3, 15_000, 'three ssh.command records').catch(() => undefined);
    // PS1=…, the heavy line, and the line typed last (exit): all on record, caught up or not.
    expect(commandsOf()).toHaveLength(3);
    const types = w.gw.events.filter((e) => e.session_id === sid).map((e) => e.type);
    expect(types.slice(types.indexOf('session.end') + 1)).not.toContain('ssh.command');
  }, 90_000);
});
