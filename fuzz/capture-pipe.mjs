#!/usr/bin/env node
// Capture helper for fuzz/capture-seeds.ts: runs a command with its stdin and stdout relayed and
// written, chunk by chunk, to a session file (direction 0 = what the command read, 1 = what it wrote;
// format in engine/session.ts). Used as sftp's `-D` server and as scp's `-S` "ssh".
//   capture-pipe.mjs OUTFILE [--scp] -- COMMAND ARGS...
// With --scp, the arguments are those scp gives its ssh program: the remote command after the host is
// run locally through sh, and the session file begins with that command line and a newline.
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const [out, ...rest] = process.argv.slice(2);
const scp = rest[0] === '--scp';
const args = rest.slice(rest.indexOf('--') + 1);
let command;
let prefix = Buffer.alloc(0);
if (scp) {
  // ssh options come first (-x -oForwardAgent=no ...), then `--`? then host, then the remote command.
  let i = 0;
  while (i < args.length && args[i].startsWith('-')) i += args[i].length === 2 && 'lpoFiJ'.includes(args[i][1]) ? 2 : 1;
  const remote = args.slice(i + 1).join(' ');
  prefix = Buffer.from(remote + '\n');
  command = ['sh', '-c', remote];
} else command = args;

const chunks = [];
const child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
process.stdin.on('data', (d) => {
  chunks.push([0, Buffer.from(d)]);
  child.stdin.write(d);
});
process.stdin.on('end', () => child.stdin.end());
child.stdout.on('data', (d) => {
  chunks.push([1, Buffer.from(d)]);
  process.stdout.write(d);
});
child.on('exit', (code) => {
  const parts = [prefix];
  for (const [dir, b] of chunks) {
    for (let off = 0; off < b.length; off += 0xffff) {
      const piece = b.subarray(off, off + 0xffff);
      const h = Buffer.alloc(3);
      h[0] = dir;
      h.writeUInt16BE(piece.length, 1);
      parts.push(h, piece);
    }
  }
  fs.writeFileSync(out, Buffer.concat(parts));
  process.stdout.end(() => process.exit(code ?? 1));
});
