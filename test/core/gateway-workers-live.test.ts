import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { IssuedFiles } from '../support/gateway.ts';
import { startGatewayProcess, type GatewayProcess } from '../support/gateway-process.ts';
import { startSshd, type SshdHandle } from '../support/sshd.ts';
import { ConsoleClient } from '../support/console.ts';
import { tempDir, waitFor } from '../support/tmp.ts';
import { apiRequest, endWorkersTest, issueCredentials, spawnClient, sshThroughGateway, twoSshWorkersConfig, type ClientProcess } from '../support/workers.ts';

/**
 * `vigil serve` with gateway.workers: 2, where the API runs in the primary and SSH sessions in the workers:
 * the live view (`vigil watch`, the watch WebSocket, the web console's) of a session shows what it types
 * and prints while it runs, whichever worker holds it, and the relay stops when the watcher leaves; a
 * primary that cannot keep up makes the worker drop the relay, never slow the session; GET /v1/sessions
 * shows the byte counts of worker sessions as they grow.
 */
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

let sshd: SshdHandle;
let gp: GatewayProcess | undefined;
let base: string;
let alice: IssuedFiles, audrey: IssuedFiles;
const clients: ClientProcess[] = [];
const sockets: WebSocket[] = [];

beforeAll(async () => {
  base = tempDir('vigil-workers-live-');
  sshd = await startSshd();
  const config = twoSshWorkersConfig(base, sshd);
  ({ alice, audrey } = await issueCredentials(config, base, { alice: { user: 'alice', roles: ['engineer'] }, audrey: { user: 'audrey', roles: ['auditor'] } }));
  gp = await startGatewayProcess(config, base);
}, 180_000);

afterAll(async () => {
  for (const s of sockets) s.terminate();
  await endWorkersTest({ clients, gp, backend: sshd, base });
});

const client = (cmd: string, args: string[]): ClientProcess => spawnClient(clients, cmd, args, { cwd: ROOT });

/** An ssh session running `cat` on the host: what the test types is printed back. */
const sshCat = (): ClientProcess => client('ssh', sshThroughGateway(gp!, alice, sshd.user, base, 'cat'));

const api = (method: string, p: string) => apiRequest(gp!.ports.api, audrey, method, p);

interface SessionRow {
  id: string;
  user: string;
  protocol: string;
  worker_pid?: number;
  bytes_from_client: number;
  bytes_to_client: number;
}
const liveSessions = async (): Promise<SessionRow[]> => (await api('GET', '/v1/sessions?live=1')).body.sessions;

/** Open an ssh `cat` session and wait until the primary lists it. */
async function openedCat(): Promise<{ row: SessionRow; c: ClientProcess }> {
  const before = new Set((await liveSessions()).map((s) => s.id));
  const c = sshCat();
  const row = await waitFor(async () => (await liveSessions()).find((s) => !before.has(s.id) && s.protocol === 'ssh'), 30_000, 'the ssh session listed');
  return { row, c };
}

/** A watch WebSocket as the auditor, collecting its messages and what the terminal printed. */
function openWatch(id: string, query = '') {
  const msgs: any[] = [];
  const ws = new WebSocket(`wss://127.0.0.1:${gp!.ports.api}/v1/sessions/${id}/watch${query}`, { cert: fs.readFileSync(audrey.crt), key: fs.readFileSync(audrey.key), ca: fs.readFileSync(audrey.ca) });
  sockets.push(ws);
  ws.on('error', () => {});
  ws.on('message', (d) => msgs.push(JSON.parse(d.toString())));
  let closeCode: number | undefined;
  const closed = new Promise<number>((r) => ws.once('close', (code) => r((closeCode = code))));
  const screen = () => msgs.filter((m) => m.type === 'cast').flatMap((m) => m.events.filter((e: any[]) => e[1] === 'o').map((e: any[]) => e[2])).join('');
  return { ws, msgs, closed, screen, closeCode: () => closeCode };
}

/** The web console's live view (NDJSON on a chunked response, cookie session) as the auditor. */
async function openConsoleLive(id: string) {
  const ca = fs.readFileSync(audrey.ca, 'utf8');
  const c = new ConsoleClient(`https://127.0.0.1:${gp!.ports.api}`, ca, { cert: fs.readFileSync(audrey.crt, 'utf8'), key: fs.readFileSync(audrey.key, 'utf8') });
  expect((await c.signIn()).status).toBe(200);
  let text = '';
  const req = https.get(`https://127.0.0.1:${gp!.ports.api}/console/api/sessions/${id}/live?from=now`, { ca, agent: false, headers: { cookie: c.cookie! } }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (d: string) => (text += d));
  });
  req.on('error', () => {});
  const msgs = () => text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const screen = () => msgs().filter((m) => m.type === 'cast').flatMap((m) => m.events.filter((e: any[]) => e[1] === 'o').map((e: any[]) => e[2])).join('');
  return { msgs, screen, close: () => req.destroy() };
}

const relayLines = (what: string) => gp!.output().split('\n').filter((l) => l.includes(what));

describe('live view and byte counts across gateway.workers: 2', () => {
  it('the live view shows what an ssh session types and prints while it runs, whichever worker holds it; the relay stops when the watcher leaves', async () => {
    // Sessions until both workers hold one (the primary hands connections round robin).
    const held = new Map<number, { row: SessionRow; c: ClientProcess }>();
    for (let i = 0; i < 8 && held.size < 2; i++) {
      const s = await openedCat();
      expect(s.row.worker_pid, JSON.stringify(s.row)).toBeGreaterThan(0);
      if (!held.has(s.row.worker_pid!)) held.set(s.row.worker_pid!, s);
    }
    expect(held.size).toBe(2);
    // Nobody watches yet: nothing is relayed.
    expect(relayLines('relaying the session')).toEqual([]);

    for (const [pid, { row, c }] of held) {
      const tag = `w${pid}`;
      c.child.stdin.write(`before-${tag}\n`);
      await waitFor(() => c.stdout().includes(`before-${tag}`), 20_000, 'cat printed the first line');
      const relaying = relayLines('relaying the session').length;
      const fromStart = openWatch(row.id);
      const fromNow = openWatch(row.id, '?from=now');
      await waitFor(() => fromStart.screen().includes(`before-${tag}`), 20_000, `the recording so far in the live view (${tag})`);
      await waitFor(() => fromNow.msgs.some((m) => m.type === 'cast'), 20_000, 'the from-now watcher follows the recording');
      expect(fromStart.msgs[0]).toMatchObject({ type: 'session', mode: 'terminal', session: { id: row.id, user: 'alice', worker_pid: pid } });
      // The worker holding the session relays it now (one relay per watcher).
      expect(relayLines('relaying the session').length).toBe(relaying + 2);
      expect(relayLines('relaying the session').slice(-2).every((l) => JSON.parse(l).worker === pid)).toBe(true);

      // Typed and printed while it runs: both watchers see it.
      c.child.stdin.write(`live-${tag}\n`);
      await waitFor(() => fromStart.screen().includes(`live-${tag}`) && fromNow.screen().includes(`live-${tag}`), 20_000, `live output in both views (${tag})`);
      expect(fromNow.screen()).not.toContain(`before-${tag}`);

      // The watchers leave: the worker stops relaying; the session goes on.
      const stopped = relayLines('relay stopped').length;
      fromStart.ws.close();
      fromNow.ws.close();
      await waitFor(() => relayLines('relay stopped').length === stopped + 2, 20_000, 'relays stopped after the watchers left');
      expect(relayLines('relay stopped').slice(-2).map((l) => JSON.parse(l).why)).toEqual(['the watcher left', 'the watcher left']);
      c.child.stdin.write(`after-${tag}\n`);
      await waitFor(() => c.stdout().includes(`after-${tag}`), 20_000, 'the session goes on');
    }

    // The web console's live view of the session the second worker holds.
    const [first, second] = held.values();
    const live = await openConsoleLive(second.row.id);
    await waitFor(() => live.msgs().some((m) => m.type === 'cast'), 20_000, 'the console live view follows the recording');
    second.c.child.stdin.write('console-sees-this\n');
    await waitFor(() => live.screen().includes('console-sees-this'), 20_000, 'live output in the console');
    live.close();

    // `vigil watch` (the CLI, another process) on the other; then the session ends while watched.
    const { row, c } = first;
    const cli = client(process.execPath, [path.join(ROOT, 'bin/vigil.js'), 'watch', row.id, '--json', '--from-now', '--api', `https://127.0.0.1:${gp!.ports.api}`, '--cert', audrey.crt, '--key', audrey.key, '--ca', audrey.ca]);
    await waitFor(() => cli.stdout().includes('"type":"cast"'), 30_000, 'the CLI watcher follows the recording');
    c.child.stdin.write('cli-sees-this\n');
    await waitFor(() => cli.stdout().includes('cli-sees-this'), 20_000, 'live output in vigil watch');
    const last = openWatch(row.id, '?from=now');
    await waitFor(() => last.msgs.some((m) => m.type === 'cast'), 20_000, 'a last watcher follows');
    c.child.stdin.end();
    expect(await c.exited).toBe(0);
    // The recording's end crosses too: the watch ends with the session, not after a grace period.
    expect(await last.closed).toBe(1000);
    expect(last.msgs.map((m) => m.type)).toEqual(expect.arrayContaining(['cast_end', 'end']));
    expect(last.msgs.findIndex((m) => m.type === 'cast_end')).toBeLessThan(last.msgs.findIndex((m) => m.type === 'end'));
    expect(await cli.exited).toBe(0);
    for (const s of held.values()) s.c.child.stdin.end();
  }, 240_000);

  it('a watch the primary cannot keep up with never holds the session back: the worker stops relaying it and the watcher is told to reconnect', async () => {
    const { row, c } = await openedCat();
    const watch = openWatch(row.id, '?from=now');
    await waitFor(() => watch.msgs.some((m) => m.type === 'session'), 20_000, 'the watch accepted');
    c.child.stdin.write('warm-up\n');
    await waitFor(() => watch.screen().includes('warm-up'), 20_000, 'the watch follows');
    const stopped = relayLines('the primary fell behind').length;
    // The primary stops reading its IPC channel (SIGSTOP): 8 MiB go through the session meanwhile, far more
    // than the relay may hold for the watcher (MAX_RELAY_QUEUED, 2 MiB) plus what the channel buffers.
    process.kill(gp!.pid, 'SIGSTOP');
    try {
      const chunk = 'y'.repeat(1023) + '\n';
      for (let i = 0; i < 8 * 1024; i++) c.child.stdin.write(chunk);
      await waitFor(() => c.stdout().length >= 8 * 1024 * 1024, 60_000, 'the session echoed 8 MiB while the primary was stopped');
    } finally {
      process.kill(gp!.pid, 'SIGCONT');
    }
    expect(await watch.closed).toBe(1013);
    await waitFor(() => relayLines('the primary fell behind').length > stopped, 20_000, 'the worker logged the dropped relay');
    // The session is unaffected and can be watched again.
    const again = openWatch(row.id, '?from=now');
    await waitFor(() => again.msgs.some((m) => m.type === 'cast'), 20_000, 'a new watch follows');
    c.child.stdin.write('still-here\n');
    await waitFor(() => again.screen().includes('still-here'), 20_000, 'live output in the new watch');
    c.child.stdin.end();
    expect(await c.exited).toBe(0);
  }, 180_000);

  it('GET /v1/sessions shows the byte counts of a worker\'s session growing while it transfers', async () => {
    const { row, c } = await openedCat();
    expect(row.worker_pid).toBeGreaterThan(0);
    const chunk = 'x'.repeat(1023) + '\n';
    const send = (kib: number) => {
      for (let i = 0; i < kib; i++) c.child.stdin.write(chunk);
    };
    send(64);
    await waitFor(() => c.stdout().length >= 64 * 1024, 20_000, 'the first 64 KiB echoed');
    const first = await waitFor(async () => {
      const r = (await liveSessions()).find((s) => s.id === row.id);
      return r && r.bytes_from_client >= 64 * 1024 && r.bytes_to_client >= 64 * 1024 ? r : undefined;
    }, 20_000, 'counts of the first 64 KiB');
    send(192);
    await waitFor(() => c.stdout().length >= 256 * 1024, 20_000, 'the next 192 KiB echoed');
    const second = await waitFor(async () => {
      const r = (await liveSessions()).find((s) => s.id === row.id);
      return r && r.bytes_from_client >= 256 * 1024 && r.bytes_to_client >= 256 * 1024 ? r : undefined;
    }, 20_000, 'counts of 256 KiB');
    expect(second.bytes_to_client).toBeGreaterThan(first.bytes_to_client);
    expect(second.worker_pid).toBe(row.worker_pid);
    c.child.stdin.end();
    expect(await c.exited).toBe(0);
  }, 120_000);

  it('a watch of a session whose worker dies ends with the session (gateway_crash)', async () => {
    const { row, c } = await openedCat();
    const watch = openWatch(row.id, '?from=now');
    c.child.stdin.write('doomed\n');
    await waitFor(() => watch.screen().includes('doomed'), 20_000, 'the watch follows');
    process.kill(row.worker_pid!, 'SIGKILL');
    // The relay ends with its worker; the primary records session.end for its sessions and the watch closes on it.
    expect(await watch.closed).toBe(1000);
    expect(watch.msgs.find((m) => m.type === 'end')).toMatchObject({ reason: 'gateway_crash' });
    await c.exited;
  }, 120_000);
});
