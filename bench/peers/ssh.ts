/**
 * SSH client transparency, side by side: OpenSSH ssh (exec, stdin, pty, ssh -J, ControlMaster), scp (SFTP
 * and -O), sftp, rsync, git over ssh, PuTTY plink and pscp, paramiko, tmux + vim inside an `ssh -tt`
 * session and ansible run the same workload direct to a real sshd and through vigil (test/ssh/peers/);
 * every check's result is printed for both, with `NO` where they differ. Exit status 1 if any differ.
 *
 *   npx tsx bench/peers/ssh.ts [--markdown]
 *
 * The CI subset is test/ssh/peers.test.ts. Needs putty-tools, python3-paramiko, tmux, vim-tiny, rsync, git
 * and ansible-core (test/setup/install-deps.sh).
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { runSshPeers, startSshPeerWorld } from '../../test/ssh/peers/peers.ts';
import { report } from './compare.ts';

const { values } = parseArgs({ options: { markdown: { type: 'boolean', default: false } } });

const w = await startSshPeerWorld();
try {
  const started = new Date();
  const load = os.loadavg()[0];
  const rows = await runSshPeers(w);
  report('ssh client peers', rows, { markdown: values.markdown!, started, load });
} finally {
  await w.stop();
}
