import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { runSshPeers, startSshPeerWorld, type SshPeerWorld } from './peers/peers.ts';
import type { PeerRow } from '../../bench/peers/compare.ts';
import { peerValues, expectSameResults } from '../support/peers.ts';

/**
 * SSH client transparency (issue 17): the clients not covered by transparency.test.ts (OpenSSH
 * ControlMaster, PuTTY pscp, tmux + vim inside an `ssh -tt` session) run the same workload direct to the
 * sshd and through vigil and must give the same results. Every client's side-by-side table (with ansible,
 * rsync, git, paramiko, plink) is bench/peers/ssh.ts.
 */
let w: SshPeerWorld;
beforeAll(async () => {
  w = await startSshPeerWorld();
}, 60_000);
afterAll(async () => {
  await w?.stop();
});

const values = peerValues;
const expectSame = (rows: PeerRow[]) => expectSameResults(rows, 2);

describe('ssh clients: same results direct and through vigil', () => {
  it('OpenSSH: exit status, stdin, pty, ssh -J, ControlMaster with three multiplexed sessions', async () => {
    const rows = await runSshPeers(w, ['openssh']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({
      exec: '3 "out\\n" "err\\n"', stdin_300k: 'same bytes', jump: '0 "via-jump\\nok\\n" ""', controlmaster_start: '0',
      controlmaster_sessions: '0 "mux-1\\n" "" ; 0 "mux-2\\n" "" ; 0 "mux-3\\n" ""', controlmaster_exit: '0',
    });
  });

  it('PuTTY plink and pscp (SFTP and SCP protocols) with the certificate in a .ppk', async () => {
    const rows = await runSshPeers(w, ['putty']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ plink: '4 "via-plink\\nfrom stdin\\n" ""', 'pscp-sftp': expect.stringMatching(/^round trip /), 'pscp-scp': expect.stringMatching(/^round trip /) });
  });

  it('tmux + vim inside an ssh -tt session: vim writes the typed line, the session ends cleanly', async () => {
    const rows = await runSshPeers(w, ['tmux+vim']);
    expectSame(rows);
    expect(values(rows)).toMatchObject({ file_written_by_vim: '"hello from vim inside tmux\\n"', session_exit: '0' });
  });
});
