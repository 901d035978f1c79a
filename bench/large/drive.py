#!/usr/bin/env python3
"""Sends one large message through a running gateway and times it.

Usage: drive.py --gateway PORT --sink-port PORT --pid PID --message FILE
                --mail-from A --rcpt B --timeout SECONDS --json OUT

Starts a sink on 127.0.0.1:SINK_PORT (a minimal SMTP server that reads DATA
in 1 MiB pieces, hashes it and discards it: it must not be the bottleneck),
then sends FILE to the gateway at 127.0.0.1:PORT over one SMTP session,
streamed from disk in 1 MiB pieces (the file must end in CRLF and have no
line starting with "."), and waits for the sink to receive the relayed copy.

Measured: the gateway's VmHWM (from /proc/PID/status) before the send (idle)
and after the sink got the copy; the times from the start of DATA to the
gateway's reply (intake: spool, verify, record) and to the copy's final dot
at the sink (end to end). Checked: the gateway accepted (250), and the copy
is FILE's bytes behind one Received: field (SHA-256 compared). Writes JSON to
OUT and prints one line. Loopback only; bounded by --timeout.
"""
import argparse
import hashlib
import json
import os
import socket
import sys
import threading
import time

PIECE = 1 << 20


def vm(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"{field} not in /proc/{pid}/status")


class Sink(threading.Thread):
    """One SMTP server thread: takes transactions, hashes each DATA."""

    def __init__(self, port, first):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.first = first  # the message's first bytes: where the copy starts
        self.done = threading.Event()
        self.result = None

    def run(self):
        while not self.done.is_set():
            conn, _ = self.sock.accept()
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        f = conn.makefile("rb", buffering=PIECE)
        conn.sendall(b"220 sink ESMTP\r\n")
        while True:
            line = f.readline(4096)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                conn.sendall(b"250-sink\r\n250-8BITMIME\r\n250 PIPELINING\r\n")
            elif verb == b"DATA":
                conn.sendall(b"354 go\r\n")
                self.data(f)
                conn.sendall(b"250 2.0.0 taken\r\n")
            elif verb == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def data(self, f):
        """Reads to the final dot: a hash of what follows the trace field."""
        h = hashlib.sha256()
        head = b""
        found = False
        size = 0
        tail = b""
        while True:
            piece = f.read1(PIECE)
            if not piece:
                raise SystemExit("sink: connection closed inside DATA")
            buf = tail + piece
            end = buf.find(b"\r\n.\r\n")
            if end >= 0:
                buf = buf[: end + 2]
            keep = b"" if end >= 0 else buf[-4:]
            body = buf[: len(buf) - len(keep)]
            tail = keep
            if not found:
                head += body
                at = head.find(self.first)
                if at >= 0:
                    found = True
                    self.trace = head[:at]
                    body = head[at:]
                else:
                    body = b""
            if found:
                h.update(body)
                size += len(body)
            if end >= 0:
                break
        self.result = {"at": time.monotonic(), "sha256": h.hexdigest(), "size": size,
                       "trace": self.trace.decode("latin-1") if found else None}
        self.done.set()


def reply(f):
    lines = []
    while True:
        line = f.readline(4096)
        if not line:
            raise SystemExit("gateway closed the connection")
        lines.append(line.decode("latin-1").rstrip())
        if line[3:4] != b"-":
            return int(line[:3]), lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", type=int, required=True)
    ap.add_argument("--sink-port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--message", required=True)
    ap.add_argument("--mail-from", required=True)
    ap.add_argument("--rcpt", required=True)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()

    size = os.path.getsize(a.message)
    want = hashlib.sha256()
    with open(a.message, "rb") as m:
        first = m.read(256)
        want.update(first)
        while chunk := m.read(PIECE):
            want.update(chunk)
    sink = Sink(a.sink_port, first)
    sink.start()

    idle_hwm = vm(a.pid, "VmHWM")
    idle_rss = vm(a.pid, "VmRSS")
    s = socket.create_connection(("127.0.0.1", a.gateway), timeout=a.timeout)
    f = s.makefile("rb")
    reply(f)
    for cmd in (b"EHLO bench.example", f"MAIL FROM:<{a.mail_from}>".encode(),
                f"RCPT TO:<{a.rcpt}>".encode()):
        s.sendall(cmd + b"\r\n")
        code, lines = reply(f)
        if code != 250:
            raise SystemExit(f"{cmd!r}: {lines}")
    s.sendall(b"DATA\r\n")
    code, lines = reply(f)
    if code != 354:
        raise SystemExit(f"DATA: {lines}")
    t0 = time.monotonic()
    with open(a.message, "rb") as m:
        while chunk := m.read(PIECE):
            s.sendall(chunk)
    s.sendall(b".\r\n")
    code, lines = reply(f)
    t1 = time.monotonic()
    s.sendall(b"QUIT\r\n")
    s.close()
    if code != 250:
        raise SystemExit(f"not accepted: {lines}")
    if not sink.done.wait(max(1.0, a.timeout - (t1 - t0))):
        raise SystemExit("the sink did not receive the copy in time")
    t2 = sink.result["at"]
    peak = vm(a.pid, "VmHWM")
    r = sink.result
    ok = r["sha256"] == want.hexdigest() and r["size"] == size and r["trace"].startswith("Received:")
    out = {
        "size": size,
        "accepted": lines[-1],
        "idle_hwm_kib": idle_hwm,
        "idle_rss_kib": idle_rss,
        "peak_hwm_kib": peak,
        "above_idle_kib": peak - idle_hwm,
        "intake_s": t1 - t0,
        "end_to_end_s": t2 - t0,
        "intake_mb_s": size / (t1 - t0) / 1e6,
        "end_to_end_mb_s": size / (t2 - t0) / 1e6,
        "byte_for_byte": ok,
    }
    with open(a.json, "w") as j:
        json.dump(out, j, indent=1)
    print(f"{size} B: peak {peak} KiB ({peak - idle_hwm:+} KiB above idle), "
          f"intake {out['intake_mb_s']:.0f} MB/s, end to end {out['end_to_end_mb_s']:.0f} MB/s, "
          f"copy {'identical' if ok else 'DIFFERS'}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
