#!/usr/bin/env python3
"""One HTTPS request with the standard library, for tests/audit_web.rs.

    https_get.py --port P --path /search [--method GET] [--header 'Name: value']...
                 [--cafile server.pem] [--cert client.pem --key client.key]

The server certificate is verified against --cafile (hostname 127.0.0.1).
Prints one JSON object: status, headers (lower-case names; repeated ones
joined with a line feed) and body (text).
"""
import argparse
import http.client
import json
import ssl

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--path", required=True)
p.add_argument("--method", default="GET")
p.add_argument("--header", action="append", default=[])
p.add_argument("--cafile", required=True)
p.add_argument("--cert")
p.add_argument("--key")
a = p.parse_args()

ctx = ssl.create_default_context(cafile=a.cafile)
if a.cert:
    ctx.load_cert_chain(a.cert, a.key)
conn = http.client.HTTPSConnection("127.0.0.1", a.port, context=ctx, timeout=30)
headers = {}
for h in a.header:
    name, value = h.split(":", 1)
    headers[name.strip()] = value.strip()
conn.request(a.method, a.path, headers=headers)
r = conn.getresponse()
out = {}
for name, value in r.getheaders():
    n = name.lower()
    out[n] = out[n] + "\n" + value if n in out else value
body = r.read().decode("utf-8", "replace")
print(json.dumps({"status": r.status, "headers": out, "body": body}))
