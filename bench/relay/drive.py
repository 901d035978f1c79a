#!/usr/bin/env python3
"""Runs one load and times it end to end, counting at the sink.

Usage: drive.py --sink-out FILE --messages N --timeout SECONDS --json OUT
                [--watch NAME=PID ...] [--settle SECONDS] [--no-load] -- CMD...

Starts CMD (the load: smtp-source), then polls FILE, the output of
`smtp-sink -c` (counters "sess=S quit=Q mesg=M" rewritten with CR after
every transaction), every 10 ms until the sink has received N messages and
the load has ended (or SECONDS have passed; the load is then killed). With
--no-load there is no CMD: it only waits for the sink (a queue drain).

It records the time from the start of the load to the load's end (intake)
and to the N-th message at the sink (end to end), how many messages the sink
had when the load ended, and, after --settle seconds more, the final sink
count (more than N would be a duplicate delivery).

CPU: for every --watch NAME=PID it reports the clock ticks (utime+stime) of
that process and of its children over the window (from the start to the N-th
message): the living children of PID as seen in /proc, plus the cutime+cstime
of PID, which holds the ticks of the children it has reaped (Postfix's master
and its short-lived daemons). Also the whole machine's busy ticks
(/proc/stat), the load's own CPU (rusage of the reaped child) and the load
average at the start. Writes everything as JSON to OUT and prints one line.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
MESG = re.compile(rb"mesg=(\d+)")
SESS = re.compile(rb"sess=(\d+)")


def stat(pid):
    """(ppid, utime+stime, cutime+cstime) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2:].split()
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def tree_ticks(root):
    """Ticks of root, its reaped children and its living children."""
    own = stat(root)
    if own is None:
        return 0
    total = own[1] + own[2]
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != root:
            st = stat(int(entry))
            if st and st[0] == root:
                total += st[1] + st[2]
    return total


def busy_ticks():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return cpu[0] + cpu[1] + cpu[2] + cpu[5] + cpu[6] + cpu[7]


class Sink:
    def __init__(self, path):
        self.f = open(path, "rb")
        self.count = 0
        self.sessions = 0
        self.tail = b""

    def poll(self):
        data = self.f.read()
        if data:
            found = MESG.findall(self.tail + data)
            if found:
                self.count = int(found[-1])
            sess = SESS.findall(self.tail + data)
            if sess:
                self.sessions = int(sess[-1])
            self.tail = data[-40:]
        return self.count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sink-out", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--json", required=True)
    p.add_argument("--watch", action="append", default=[])
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--no-load", action="store_true")
    p.add_argument("--t0-epoch", type=float,
                   help="with --no-load: the drain started at this time (time.time()); "
                        "the sink is counted from 0 and the watched processes' whole CPU counts")
    p.add_argument("cmd", nargs="*")
    a = p.parse_args()
    watch = {}
    for w in a.watch:
        name, pid = w.split("=")
        watch[name] = int(pid)
    sink = Sink(a.sink_out)
    base = 0 if a.no_load else sink.poll()
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[0]

    def snap():
        return {n: tree_ticks(pid) for n, pid in watch.items()} | {"machine": busy_ticks()}

    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s0 = snap()
    t0 = time.perf_counter()
    if a.no_load and a.t0_epoch:
        t0 -= max(0.0, time.time() - a.t0_epoch)
        s0 = {k: (v if k == "machine" else 0) for k, v in s0.items()}
    proc = None if a.no_load else subprocess.Popen(a.cmd)
    t_load = 0.0 if a.no_load else None
    at_load_end = base if a.no_load else None
    load_rc = 0
    t_end = None
    s_end = None
    while True:
        now = time.perf_counter() - t0
        n = sink.poll() - base
        if t_load is None and proc.poll() is not None:
            t_load, at_load_end, load_rc = now, n, proc.returncode
        if t_end is None and n >= a.messages and (a.messages > 0 or t_load is not None):
            t_end, s_end = now, snap()
        if t_end is not None and t_load is not None:
            break
        if now > a.timeout:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
                t_load, at_load_end, load_rc = now, n, "killed"
            break
        time.sleep(0.01)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(a.settle)
    final = sink.poll() - base
    window = t_end if t_end is not None else time.perf_counter() - t0
    s1 = s_end or snap()
    ticks = {k: s1[k] - s0[k] for k in s0}
    pct = {k: round(100.0 * v / HZ / window, 1) for k, v in ticks.items()}
    result = {
        "messages": a.messages,
        "load_rc": load_rc,
        "intake_s": round(t_load, 3) if t_load is not None else None,
        "end_to_end_s": round(t_end, 3) if t_end is not None else None,
        "sink_at_load_end": at_load_end,
        "sink_final": final,
        "sink_sessions": sink.sessions,
        "ticks": ticks,
        "cpu_pct": pct,
        "client_cpu_s": round((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime), 3),
        "loadavg_start": loadavg,
        "hz": HZ,
    }
    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    ok = t_end is not None and final == a.messages and load_rc == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
