#!/usr/bin/env python3
"""An RFC 3161 time-stamping authority for tests: `openssl ts -reply`
behind HTTP.

Usage: tsa_serve.py DIR [PORT] -- binds 127.0.0.1 on PORT (default: a
free one), prints "listening on PORT" and serves until killed. DIR holds tsa.cnf (the
openssl [tsa] section, `serial = @SERIAL@`) and, per signer NAME, NAME.pem and NAME.key:

  POST /NAME         the reply to the request, signed by NAME
  POST /NAME/other   a reply signed by NAME over another imprint (a
                     request for SHA-256 of "other"), as a confused or
                     hostile TSA might send
"""

import http.server
import os
import subprocess
import sys
import tempfile
import time

OPENSSL = os.environ.get("OPENSSL", "openssl")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, status, body=b"", ctype="application/timestamp-reply"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        query = self.rfile.read(n) if n <= 65536 else b""
        parts = self.path.strip("/").split("/")
        name = os.path.basename(parts[0])
        root = self.server.root
        if not os.path.isfile(os.path.join(root, name + ".pem")):
            return self.send(404, b"", "text/plain")
        with tempfile.TemporaryDirectory() as tmp:
            q = os.path.join(tmp, "q.tsq")
            if parts[1:] == ["other"]:
                data = os.path.join(tmp, "other")
                with open(data, "wb") as f:
                    f.write(b"other")
                subprocess.run([OPENSSL, "ts", "-query", "-data", data, "-sha256",
                                "-cert", "-no_nonce", "-out", q], check=True,
                               capture_output=True, timeout=30)
            else:
                with open(q, "wb") as f:
                    f.write(query)
            # A serial file per reply (openssl rewrites it): replies in
            # parallel never share one, and serials differ.
            serial = os.path.join(tmp, "serial")
            with open(serial, "w") as f:
                f.write(f"{time.time_ns():x}\n")
            cnf = os.path.join(tmp, "tsa.cnf")
            with open(os.path.join(root, "tsa.cnf")) as f:
                text = f.read().replace("@SERIAL@", serial)
            with open(cnf, "w") as f:
                f.write(text)
            r = os.path.join(tmp, "r.tsr")
            done = subprocess.run(
                [OPENSSL, "ts", "-reply", "-config", cnf,
                 "-queryfile", q, "-signer", os.path.join(root, name + ".pem"),
                 "-inkey", os.path.join(root, name + ".key"), "-out", r],
                capture_output=True, timeout=30)
            if done.returncode != 0:
                return self.send(500, done.stderr, "text/plain")
            with open(r, "rb") as f:
                self.send(200, f.read())


def main():
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.root = sys.argv[1]
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
