import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { runCli } from '../../app/main.ts';
import { startWorld, type SshWorld } from '../ssh/harness.ts';
import type { IssuedFiles } from '../support/gateway.ts';
import { runCliCaptured } from '../support/cli.ts';
import { waitFor } from '../support/tmp.ts';

/**
 * Live watch and kill over real parts: OpenSSH client in a tmux terminal, real sshd behind the gateway,
 * the gateway's HTTPS/WebSocket API with real vigil client certificates, and the vigil CLI.
 */

let w: SshWorld;
let audrey: IssuedFiles;
let ada: IssuedFiles;
let alice: IssuedFiles;
let apiUrl: string;
let dir: string;

beforeAll(async () => {
  w = await startWorld();
  dir = path.join(w.gw.dataDir, '..');
  audrey = await w.gw.issue({ user: 'audrey', roles: ['auditor'] });
  ada = await w.gw.issue({ user: 'ada', roles: ['admin'] });
  alice = await w.issue();
  apiUrl = `https://127.0.0.1:${w.gw.ports.api}`;
}, 60_000);

afterAll(async () => {
  await w?.stop();
});

const api = (who: IssuedFiles) => ['--api', apiUrl, '--cert', who.crt, '--key', who.key, '--ca', who.ca];

/** A watch socket as `who`, collecting the messages; `refused` holds the HTTP refusal when there is one. */
function openWatch(who: IssuedFiles, id: string, query = '') {
  const msgs: any[] = [];
  const ws = new WebSocket(`wss://127.0.0.1:${w.gw.ports.api}/v1/sessions/${id}/watch${query}`, {
    cert: fs.readFileSync(who.crt),
    key: fs.readFileSync(who.key),
    ca: fs.readFileSync(who.ca),
  });
  const refused = new Promise<{ status: number; body: any }>((resolve) => {
    ws.on('unexpected-response', (_req, res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }));
    });
  });
  ws.on('error', () => {});
  ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
  const opened = new Promise<void>((r) => ws.once('open', () => r()));
  const closed = new Promise<void>((r) => ws.once('close', () => r()));
  const screen = () => msgs.filter((m) => m.type === 'cast').flatMap((m) => m.events.filter((e: any[]) => e[1] === 'o').map((e: any[]) => e[2])).join('');
  return { ws, msgs, refused, opened, closed, screen };
}

function get(p: string, who: IssuedFiles): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(`${apiUrl}${p}`, { cert: fs.readFileSync(who.crt), key: fs.readFileSync(who.key), ca: fs.readFileSync(who.ca) }, (res) => {
        let t = '';
        res.on('data', (c) => (t += c));
        res.on('end', () => resolve(t));
      })
      .on('error', reject);
  });
}

describe('live watch and kill of an SSH terminal session', () => {
  it('an auditor watches a live shell from the start and from now, read-only; others are refused; kill ends it with a message on the terminal', async () => {
    const sock = path.join(dir, 'tmux-watch.sock');
    const cmd = ['ssh', ...w.opts(alice, ['-t']), 'web1@127.0.0.1'].map((a) => `'${a}'`).join(' ');
    execFileSync('tmux', ['-S', sock, 'new-session', '-d', '-x', '120', '-y', '40', `${cmd}; sleep 30`]);
    const keys = (...k: string[]) => execFileSync('tmux', ['-S', sock, 'send-keys', ...k]);
    const screen = () => execFileSync('tmux', ['-S', sock, 'capture-pane', '-p']).toString();
    try {
      await waitFor(() => /[$#]\s*$/m.test(screen()), 15_000, 'shell prompt');
      keys('-l', 'echo before-$((1+1))');
      keys('Enter');
      await waitFor(() => screen().includes('\nbefore-2'), 10_000, 'output before watching');
      const start = await w.gw.waitForEvent((e) => e.type === 'session.start' && e.actor.user === 'alice');
      const id = start.session_id!;

      // The live list shows the session with its byte counts.
      const listed = await runCliCaptured(['sessions', 'list', '--live', '--json', ...api(audrey)]);
      expect(listed.code, listed.err).toBe(0);
      const row = listed.out.trim().split('\n').map((l) => JSON.parse(l)).find((s) => s.id === id);
      expect(row).toMatchObject({ user: 'alice', protocol: 'ssh', target: { name: 'web1' } });
      expect(row.bytes_to_client).toBeGreaterThan(0);

      // Without an admin/auditor role: refused, and the refusal is recorded.
      const mallory = openWatch(alice, id);
      expect(await mallory.refused).toMatchObject({ status: 403, body: { error: { code: 'VIGIL_FORBIDDEN' } } });
      const refusal = await w.gw.waitForEvent((e) => e.type === 'session.watch_started' && e.outcome === 'failure');
      expect(refusal).toMatchObject({ actor: { user: 'alice' }, target: { name: `session/${id}` }, details: { session_id: id } });

      // The CLI watcher (from the start) renders the terminal raw; a second watcher follows from now.
      const cliOut: Buffer[] = [];
      const cliErr: Buffer[] = [];
      const sink = (a: Buffer[]) => new Writable({ write(c, _e, cb) { a.push(Buffer.from(c)); cb(); } });
      const cliDone = runCli(['watch', id, ...api(audrey)], sink(cliOut), sink(cliErr));
      const cliText = () => Buffer.concat(cliOut).toString();
      await waitFor(() => cliText().includes('before-2'), 10_000, 'replay from the start in the CLI watcher');
      const now = openWatch(audrey, id, '?from=now');
      await now.opened;
      await waitFor(() => now.msgs.some((m) => m.type === 'session'), 5000, 'session message');
      expect(now.msgs[0]).toMatchObject({ type: 'session', mode: 'terminal', from: 'now', session: { id, user: 'alice' } });

      keys('-l', 'echo live-$((6*7))');
      keys('Enter');
      await waitFor(() => cliText().includes('live-42'), 10_000, 'live output in the CLI watcher');
      await waitFor(() => now.screen().includes('live-42'), 10_000, 'live output in the from-now watcher');
      expect(now.screen()).not.toContain('before-2');

      // What the session prints cannot drive the watcher's terminal: its clipboard write is dropped.
      keys('-l', "printf '\\033]52;c;aGk=\\007osc-%s\\n' $((2*4))");
      keys('Enter');
      await waitFor(() => cliText().includes('osc-8'), 10_000, 'output after a clipboard write in the CLI watcher');
      expect(cliText()).not.toContain('\x1b]52');

      // Read-only: what a watcher sends never reaches the session.
      now.ws.send('echo injected-$((5*5))\r');
      now.ws.send(Buffer.from('echo injected-$((5*5))\r'));
      keys('-l', 'echo after-$((3*3))');
      keys('Enter');
      await waitFor(() => cliText().includes('after-9') && now.screen().includes('after-9'), 10_000, 'output after the injection attempt');
      expect(screen()).not.toContain('injected');
      expect(cliText()).not.toContain('injected');

      const started = w.eventsOf('session.watch_started', (e) => e.outcome === 'success');
      expect(started.map((e) => [e.actor.user, e.details.from])).toEqual([['audrey', 'start'], ['audrey', 'now']]);

      // The auditor watches but may not end the session; an admin kills it through the CLI: the
      // engineer's terminal says who and why; session.end says terminated.
      const notHers = await runCliCaptured(['sessions', 'kill', id, '--reason', 'INC-9 stop now', ...api(audrey)]);
      expect(notHers.code).toBe(1);
      expect(notHers.err).toContain('VIGIL_FORBIDDEN');
      expect(w.gw.gw.services.sessions.get(id)).toBeDefined();
      const killed = await runCliCaptured(['sessions', 'kill', id, '--reason', 'INC-9 stop now', ...api(ada)]);
      expect(killed.code, killed.err).toBe(0);
      expect(killed.out).toContain(`killed session ${id}`);
      await waitFor(() => screen().includes('vigil: terminated by ada: INC-9 stop now'), 10_000, 'kill message on the terminal');
      const end = await w.gw.waitForEvent((e) => e.type === 'session.end' && e.session_id === id);
      expect(end.details.reason).toBe('terminated');
      expect(w.eventsOf('session.kill', (e) => e.outcome === 'failure').map((e) => e.actor.user)).toEqual(['audrey']);
      const kill = w.eventsOf('session.kill', (e) => e.outcome === 'success')[0];
      expect(kill).toMatchObject({ actor: { user: 'ada' }, details: { session_id: id, session_user: 'alice', reason: 'INC-9 stop now' } });

      // Both watchers see the end and are closed; each watch is recorded as ended.
      expect(await cliDone).toBe(0);
      expect(Buffer.concat(cliErr).toString()).toContain('the session ended (terminated)');
      await now.closed;
      expect(now.msgs.at(-1)).toEqual({ type: 'end', reason: 'terminated' });
      const ended = await waitFor(() => {
        const e = w.eventsOf('session.watch_ended');
        return e.length === 2 ? e : undefined;
      }, 5000, 'session.watch_ended x2');
      expect(ended.every((e) => e.details.why === 'session_ended' && e.details.session_id === id)).toBe(true);

      const metrics = await get('/metrics', audrey);
      expect(metrics).toContain('vigil_sessions_killed_total 1');
      expect(metrics).toContain('vigil_sessions_watched_total 2');
      expect(metrics).toContain('vigil_session_watchers 0');
    } finally {
      try {
        execFileSync('tmux', ['-S', sock, 'kill-server'], { stdio: 'ignore' });
      } catch {
        /* gone */
      }
    }
  }, 90_000);

  it('kill is refused without the role (recorded), and needs a reason', async () => {
    const r = await runCliCaptured(['sessions', 'kill', 'NOSUCH', '--reason', 'x', ...api(alice)]);
    expect(r.code).toBe(1);
    expect(r.err).toContain('VIGIL_FORBIDDEN');
    await w.gw.waitForEvent((e) => e.type === 'session.kill' && e.outcome === 'failure' && e.actor.user === 'alice');
    const missing = await runCliCaptured(['sessions', 'kill', 'NOSUCH', '--reason', 'x', ...api(ada)]);
    expect(missing.err).toContain('VIGIL_NOT_FOUND');
  });
});
