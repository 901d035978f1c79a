#!/usr/bin/env python3
"""A tiny HTTP server for tests/revocation_http.rs.

Usage: http_serve.py DIR [CERT KEY]   -- binds 127.0.0.1 on a free port, prints
"listening on PORT" and serves until killed (HTTPS with CERT and KEY, PEM):

  GET/POST /files/NAME          the file DIR/NAME (404 when missing)
  GET      /status/N            status N, empty body
  GET      /loop                302 to /loop, forever
  GET      /redirect?to=URL     302 to URL (any scheme)
  GET      /hops/N              302 to /hops/N-1, ..., /hops/0 serves "arrived"
  GET      /big?n=N             N bytes, with Content-Length
  GET      /chunked?n=N         N bytes, chunked, no Content-Length
  GET      /slow                headers and 5 bytes, then nothing for 120 s
  POST     /echo                the request body back, with its Content-Type
  POST     /see-other           303 to /files/NAME?... (turns the POST into a GET)
"""

import http.server
import os
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the test reads only stdout's first line
        pass

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, to, status=302):
        self.send(status, b"", [("Location", to)])

    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = urllib.parse.parse_qs(u.query)
        n = int(q.get("n", ["0"])[0])
        p = u.path
        if p.startswith("/files/"):
            path = os.path.join(self.server.root, os.path.basename(p[len("/files/"):]))
            if not os.path.isfile(path):
                return self.send(404, b"not found")
            with open(path, "rb") as f:
                return self.send(200, f.read(), [("Content-Type", "application/octet-stream")])
        if p.startswith("/status/"):
            return self.send(int(p[len("/status/"):]))
        if p == "/loop":
            return self.redirect("/loop")
        if p == "/redirect":
            return self.redirect(q["to"][0])
        if p.startswith("/hops/"):
            left = int(p[len("/hops/"):])
            if left == 0:
                return self.send(200, b"arrived")
            return self.redirect("/hops/%d" % (left - 1))
        if p == "/big":
            return self.send(200, b"x" * n)
        if p == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = n
            while left > 0:
                k = min(left, 4096)
                self.wfile.write(b"%x\r\n" % k + b"x" * k + b"\r\n")
                left -= k
            self.wfile.write(b"0\r\n\r\n")
            return
        if p == "/slow":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"start")
            self.wfile.flush()
            time.sleep(120)
            return
        return self.send(404, b"no such path")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        u = urllib.parse.urlparse(self.path)
        if u.path == "/echo":
            ct = self.headers.get("Content-Type", "")
            return self.send(200, body, [("Content-Type", ct), ("X-Method", "POST")])
        if u.path == "/see-other":
            return self.redirect("/files/" + urllib.parse.parse_qs(u.query)["name"][0], 303)
        if u.path == "/loop":
            return self.redirect("/loop", 307)
        return self.send(404, b"no such path")


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.root = sys.argv[1]
    if len(sys.argv) > 3:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[2], sys.argv[3])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
