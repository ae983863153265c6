"""The paramiko side of the SSH client comparison (test/ssh/peers/peers.ts).

Usage: paramiko_workload.py port user key cert|- known_hosts remote_dir
Prints one JSON object of results; the same direct and through vigil.
"""
import hashlib
import json
import sys

import paramiko

port, user, key, cert, known, remote = sys.argv[1:7]
pkey = paramiko.Ed25519Key.from_private_key_file(key)
if cert != "-":
    pkey.load_certificate(cert)
c = paramiko.SSHClient()
c.load_host_keys(known)
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.connect("127.0.0.1", port=int(port), username=user, pkey=pkey, allow_agent=False, look_for_keys=False)
out = {}
_, so, se = c.exec_command("echo out; echo err >&2; exit 3")
out["exec"] = [so.read().decode(), se.read().decode(), so.channel.recv_exit_status()]
stdin, so, _ = c.exec_command("sha256sum")
blob = bytes(i * 13 & 0xFF for i in range(1_000_000))
stdin.write(blob)
stdin.channel.shutdown_write()
out["stdin_1mb"] = so.read().decode().split()[0] == hashlib.sha256(blob).hexdigest()
s = c.open_sftp()
with s.open(f"{remote}/paramiko.bin", "wb") as f:
    f.write(blob)
out["sftp_stat"] = s.stat(f"{remote}/paramiko.bin").st_size
with s.open(f"{remote}/paramiko.bin", "rb") as f:
    out["sftp_read_back"] = hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(blob).hexdigest()
out["sftp_listdir"] = sorted(n for n in s.listdir(remote) if n.startswith("paramiko"))
s.remove(f"{remote}/paramiko.bin")
chan = c.get_transport().open_session()
chan.get_pty(term="xterm", width=100, height=30)
chan.exec_command("tty -s && echo has-tty; stty size")
buf = b""
while True:
    d = chan.recv(4096)
    if not d:
        break
    buf += d
out["pty"] = buf.decode().replace("\r", "")
out["pty_exit"] = chan.recv_exit_status()
c.close()
print(json.dumps(out, sort_keys=True))
