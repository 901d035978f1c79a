#!/usr/bin/env python3
"""A counterpart mail server for the relay tests, on aiosmtpd.

Usage: sink.py --dir DIR [--port N] [--refuse-rcpt ADDR]... [--defer N]
               [--tls CERT KEY] [--require-tls]

Binds 127.0.0.1 (port 0 = any free port), prints "ready PORT" and serves
until killed. Each accepted message is written to DIR/NNNN.eml exactly as
received on the wire (after dot-unstuffing), and DIR/NNNN.json holds the
envelope (mail_from, rcpt_tos, tls) and the client's address (peer). Refused recipients get
`550 5.1.1 <addr>: no such user`; the first N DATA commands get
`451 4.3.0 try later` (--defer).
"""

import argparse
import threading
import json
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP


class Sink:
    def __init__(self, out, refuse, defer):
        self.out = out
        self.refuse = {a.lower() for a in refuse}
        self.defer = defer
        self.n = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refuse:
            return f"550 5.1.1 <{address}>: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.defer > 0:
            self.defer -= 1
            return "451 4.3.0 try later"
        self.n += 1
        base = os.path.join(self.out, f"{self.n:04d}")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "tls": session.ssl is not None,
            "peer": list(session.peer),
        }
        with open(base + ".json", "w") as f:
            json.dump(meta, f)
        os.rename(base + ".eml.tmp", base + ".eml")
        return f"250 2.0.0 stored as {self.n:04d}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--refuse-rcpt", action="append", default=[])
    ap.add_argument("--defer", type=int, default=0)
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--require-tls", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    ctx = None
    if a.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
    port = a.port
    if port == 0:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    handler = Sink(a.dir, a.refuse_rcpt, a.defer)
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=a.require_tls,
        decode_data=False,
        data_size_limit=64 * 1024 * 1024,
    )
    controller.start()
    print(f"ready {port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())
