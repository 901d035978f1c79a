#!/usr/bin/env python3
"""SMTP load client for the intake benchmark: throughput and DATA→250 latency.

Usage: load.py --port PORT --sessions N --messages M [--host 127.0.0.1]
               [--from ADDR] [--to ADDR] [--timeout SECONDS] [--unique]
               [--number-rcpt] [--watch-pid PID] [--json FILE]
               MESSAGE...

Opens N concurrent SMTP sessions to HOST:PORT (127.0.0.1 only) and sends M
messages in total over them: each session does EHLO once, then per message
MAIL FROM / RCPT TO / DATA (pipelined: the server advertises PIPELINING),
waits for 250/250/354, writes the dot-stuffed message and the final
".\\r\\n" in one write, and records the time from that write to the reply.
Messages are taken round-robin from the MESSAGE files (CRLF, sent as is).
With --unique, each message gets its own first header line
"Message-ID: <SEQ.RUN@load.test>", outside the signed content, so every
message sent is byte-distinct (its own content-addressed body file at the
gateway) while its signature still verifies.
With --number-rcpt, each message's recipient gets a sequence number in
front of its local part (RCPT TO:<SEQbob@...>, as smtp-source -N does): the
gateway recognises a signature it accepted before for the same recipient as
a replay (intake/replay.rs) and answers "250 already accepted" without
recording it, so a load that repeats signed messages must vary the recipient.
Each 250 reply counts as accepted; anything else is counted and reported.

Prints one line of results (and writes them as JSON with --json): messages
sent and accepted, wall time, messages/s, p50/p99/max of DATA→reply latency
in ms, and the client's own CPU use (user+sys over wall, in % of one core)
so that a saturated client is visible. With --watch-pid it also reports,
over exactly the same window, the CPU clock ticks of that process (the
gateway), of all PostgreSQL server processes, and of the whole machine (busy,
all CPUs). The whole run is bounded by --timeout.
"""
import argparse
import asyncio
import json
import os
import re
import sys
import time


def ticks(pid):
    """(utime+stime of pid, of all postgres processes, machine busy) in clock ticks."""
    def stat(path):
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            return None
        comm_end = text.rindex(")")
        fields = text[comm_end + 2:].split()
        return text[text.index("(") + 1:comm_end], int(fields[11]) + int(fields[12])
    own = stat(f"/proc/{pid}/stat")[1]
    pg = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = stat(f"/proc/{entry}/stat")
            if st and st[0] == "postgres":
                pg += st[1]
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    busy = cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]
    return own, pg, busy


def percentile(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    k = max(0, min(len(sorted_ms) - 1, int(round(p / 100.0 * len(sorted_ms) + 0.5)) - 1))
    return sorted_ms[k]


async def reply(reader):
    """One (possibly multi-line) SMTP reply: (code, text of the last line)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3]), line.decode("ascii", "replace").strip()


class Run:
    def __init__(self, total, payloads, envelope, unique, number_rcpt=False):
        """envelope: the MAIL/RCPT/DATA bytes, or a function of the recipient's
        sequence number (None without number_rcpt) giving them."""
        self.total = total
        self.unique = unique
        self.number_rcpt = number_rcpt
        self.run_id = f"{os.getpid()}.{time.time_ns()}"
        self.next = 0
        self.payloads = payloads
        self.envelope = envelope if callable(envelope) else (lambda _seq: envelope)
        self.latencies = []
        self.accepted = 0
        self.refused = {}

    def take(self):
        if self.next >= self.total:
            return None
        i = self.next
        self.next += 1
        payload = self.payloads[i % len(self.payloads)]
        if self.unique:
            payload = f"Message-ID: <{i}.{self.run_id}@load.test>\r\n".encode() + payload
        return self.envelope(i + 1 if self.number_rcpt else None), payload


async def session(run, host, port):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        code, text = await reply(reader)
        if code != 220:
            raise ConnectionError(f"greeting: {text}")
        writer.write(b"EHLO load.test\r\n")
        code, text = await reply(reader)
        if code != 250:
            raise ConnectionError(f"EHLO: {text}")
        perf = time.perf_counter
        while (taken := run.take()) is not None:
            envelope, payload = taken
            writer.write(envelope)
            codes = [(await reply(reader)) for _ in range(3)]
            if [c for c, _ in codes] != [250, 250, 354]:
                run.refused[codes[-1][1]] = run.refused.get(codes[-1][1], 0) + 1
                writer.write(b"RSET\r\n")
                await reply(reader)
                continue
            writer.write(payload)
            t0 = perf()
            code, text = await reply(reader)
            run.latencies.append((perf() - t0) * 1000.0)
            if code == 250:
                run.accepted += 1
            else:
                run.refused[text] = run.refused.get(text, 0) + 1
        writer.write(b"QUIT\r\n")
        await reply(reader)
    finally:
        writer.close()


async def main_async(args, payloads):
    def envelope(seq):
        rcpt = args.rcpt if seq is None else f"{seq}{args.rcpt}"
        return f"MAIL FROM:<{args.mail_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode()
    run = Run(args.messages, payloads, envelope, args.unique, args.number_rcpt)
    watch0 = ticks(args.watch_pid) if args.watch_pid else None
    cpu0, t0 = os.times(), time.perf_counter()
    tasks = [asyncio.create_task(session(run, args.host, args.port)) for _ in range(args.sessions)]
    done, pending = await asyncio.wait(tasks, timeout=args.timeout)
    for t in pending:
        t.cancel()
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    watch1 = ticks(args.watch_pid) if args.watch_pid else None
    errors = [repr(t.exception()) for t in done if t.exception()]
    if pending:
        errors.append(f"{len(pending)} sessions still running after {args.timeout} s")
    lat = sorted(run.latencies)
    result = {
        "sessions": args.sessions,
        "messages": args.messages,
        "sent": len(lat),
        "accepted": run.accepted,
        "refused": run.refused,
        "errors": errors,
        "wall_s": round(wall, 3),
        "msgs_per_s": round(run.accepted / wall, 1) if wall > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(lat[-1], 2) if lat else float("nan"),
        "client_cpu_pct": round(100.0 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall, 1),
    }
    if watch0:
        result["server_ticks"], result["pg_ticks"], result["busy_ticks"] = (
            b - a for a, b in zip(watch0, watch1))
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--from", dest="mail_from", default="alice@justice.aa.example")
    p.add_argument("--to", dest="rcpt", default="bob@justice.bb.example")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--unique", action="store_true",
                   help="prepend a unique Message-ID header to every message")
    p.add_argument("--number-rcpt", action="store_true",
                   help="prepend a sequence number to the recipient of every message")
    p.add_argument("--watch-pid", type=int,
                   help="report the CPU ticks of this process over the run")
    p.add_argument("--json")
    p.add_argument("files", nargs="+")
    args = p.parse_args()
    if args.host != "127.0.0.1":
        sys.exit("load.py: only 127.0.0.1 is a permitted target")
    payloads = []
    for path in args.files:
        raw = open(path, "rb").read()
        if re.search(rb"\r(?!\n)|(?<!\r)\n", raw) or not raw.endswith(b"\r\n"):
            sys.exit(f"load.py: {path} is not CRLF throughout")
        # Dot-stuffing, then the end of DATA.
        payloads.append(re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n")
    result = asyncio.run(main_async(args, payloads))
    print(" ".join(f"{k}={v}" for k, v in result.items() if k not in ("refused", "errors")))
    for text, n in result["refused"].items():
        print(f"refused x{n}: {text}", file=sys.stderr)
    for e in result["errors"][:5]:
        print(f"error: {e}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    sys.exit(0 if result["accepted"] == args.messages else 1)


if __name__ == "__main__":
    main()
