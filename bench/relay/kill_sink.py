#!/usr/bin/env python3
"""A sink for bench/relay/kill.sh that records every delivery.

Usage: kill_sink.py --port-file FILE --log FILE [--timeout SECONDS]

Listens on 127.0.0.1 (a free port, written to --port-file once it listens)
with aiosmtpd, accepts every message and, before its 250, appends one line
per envelope recipient to --log (flushed to the OS: the sink is never the
process that is killed). kill.sh's load gives every message a recipient of
its own, so a recipient that appears twice is a duplicate delivery. Stops
after --timeout seconds at most, or on SIGTERM.
"""
import argparse
import asyncio
import signal
import socket

from aiosmtpd.controller import Controller


class Recorder:
    def __init__(self, log):
        self.log = log

    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            self.log.write(rcpt + "\n")
        self.log.flush()
        return "250 2.0.0 recorded"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(args.log, "a", buffering=1 << 16)
    controller = Controller(Recorder(log), hostname="127.0.0.1", port=port,
                            server_kwargs={"data_size_limit": 1 << 24})
    controller.start()
    with open(args.port_file, "w") as f:
        f.write(f"{port}\n")
    stop = asyncio.Event()

    async def wait():
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await asyncio.wait_for(stop.wait(), args.timeout)
        except asyncio.TimeoutError:
            pass

    asyncio.run(wait())
    controller.stop()
    log.close()


if __name__ == "__main__":
    main()
