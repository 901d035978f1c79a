#!/usr/bin/env python3
"""The load of bench/relay/kill.sh: distinct messages into a gateway that is
killed and restarted under it.

Usage: kill_load.py --port PORT --messages N --sessions S --acked FILE
                    [--from ADDR] [--to ADDR] [--timeout SECONDS] MESSAGE

Sends MESSAGE (CRLF, as bench/intake/load.py reads it) N times over S
sessions, the i-th to recipient "<i><to>" (1bob@..., as smtp-source -N), so
that every message is new to the gateway's replay check and every delivery
can be told apart at the sink. A message is sent until a reply settles it:
a 250 (written to --acked, one recipient a line, flushed at once: these must
all reach the sink) or a 5xx (counted). A broken connection or a 4xx (the
gateway being killed, or not up yet) puts it back to be sent again on a new
connection, after a short pause; a message sent again after its first
transaction was recorded but not answered is a replay and gets
"250 already accepted" (recorded once). 127.0.0.1 only; bounded by --timeout.
Prints a JSON summary.
"""
import argparse
import asyncio
import collections
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "intake"))
import load  # noqa: E402  (its SMTP reply reader)


class Work:
    def __init__(self, n):
        self.todo = collections.deque(range(1, n + 1))
        self.in_flight = 0
        self.acked = 0
        self.refused = 0
        self.retries = 0
        self.connect_failures = 0


async def session(work, args, payload, acked):
    while work.todo or work.in_flight:
        if not work.todo:
            await asyncio.sleep(0.05)
            continue
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", args.port), 2)
        except (OSError, asyncio.TimeoutError):
            work.connect_failures += 1
            await asyncio.sleep(0.05)
            continue
        seq = None
        try:
            code, _ = await load.reply(reader)
            if code != 220:
                raise ConnectionError("no greeting")
            writer.write(b"EHLO kill.test\r\n")
            if (await load.reply(reader))[0] != 250:
                raise ConnectionError("EHLO refused")
            while work.todo:
                seq = work.todo.popleft()
                work.in_flight += 1
                rcpt = f"{seq}{args.rcpt}"
                writer.write(f"MAIL FROM:<{args.mail_from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
                codes = [(await load.reply(reader))[0] for _ in range(3)]
                if codes != [250, 250, 354]:
                    raise ConnectionError(f"envelope: {codes}")
                writer.write(payload)
                code, text = await load.reply(reader)
                work.in_flight -= 1
                if code == 250:
                    acked.write(rcpt + "\n")
                    acked.flush()
                    work.acked += 1
                elif code >= 500:
                    work.refused += 1
                    print(f"kill_load: {rcpt} refused: {text}", file=sys.stderr)
                else:
                    work.todo.append(seq)
                    work.retries += 1
                seq = None
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            if seq is not None:
                # Not settled: sent again on the next connection.
                work.in_flight -= 1
                work.todo.append(seq)
                work.retries += 1
        await asyncio.sleep(0.05)


async def main_async(args, payload):
    work = Work(args.messages)
    t0 = time.perf_counter()
    with open(args.acked, "a") as acked:
        tasks = [asyncio.create_task(session(work, args, payload, acked)) for _ in range(args.sessions)]
        done, pending = await asyncio.wait(tasks, timeout=args.timeout)
        for t in pending:
            t.cancel()
    errors = [repr(t.exception()) for t in done if t.exception()]
    return {
        "messages": args.messages,
        "acked": work.acked,
        "refused": work.refused,
        "unsettled": len(work.todo) + work.in_flight,
        "retries": work.retries,
        "connect_failures": work.connect_failures,
        "wall_s": round(time.perf_counter() - t0, 2),
        "timed_out": bool(pending),
        "errors": errors[:5],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--sessions", type=int, default=20)
    p.add_argument("--acked", required=True)
    p.add_argument("--from", dest="mail_from", default="alice@justice.aa.example")
    p.add_argument("--to", dest="rcpt", default="bob@justice.bb.example")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("message")
    args = p.parse_args()
    raw = open(args.message, "rb").read()
    if re.search(rb"\r(?!\n)|(?<!\r)\n", raw) or not raw.endswith(b"\r\n"):
        sys.exit(f"kill_load: {args.message} is not CRLF throughout")
    payload = re.sub(rb"(?m)^\.", b"..", raw) + b".\r\n"
    print(json.dumps(asyncio.run(main_async(args, payload))))


if __name__ == "__main__":
    main()
