#!/usr/bin/env python3
"""Send message files with Python's smtplib and report every reply.

Usage: smtp_send.py --port P --from ADDR --to ADDR [--to ADDR]... [--host H]
                    [--starttls] FILE...

Each FILE (raw RFC 5322 bytes, CRLF line endings) is sent in its own
transaction over one session; smtplib dot-stuffs and adds the final dot, and
sends the bytes otherwise unchanged. Prints one JSON object per file:
  {"file": F, "stage": "mail"|"rcpt"|"data"|"error", "code": N, "reply": TEXT}
where stage is the step whose reply is reported (the first refusal, else the
reply to the final dot). A connection the server closed is reported with
stage "error" and code 0, and the remaining files are sent on a new session.
"""

import argparse
import json
import smtplib
import sys


def connect(args):
    s = smtplib.SMTP(args.host, args.port, local_hostname="client.test", timeout=60)
    s.ehlo()
    if args.starttls:
        s.starttls()
        s.ehlo()
    return s


def send_one(s, args, path):
    with open(path, "rb") as f:
        msg = f.read()
    code, reply = s.mail(args.sender)
    if code != 250:
        s.rset()
        return "mail", code, reply
    refused = None
    for rcpt in args.to:
        code, reply = s.rcpt(rcpt)
        if code not in (250, 251) and refused is None:
            refused = (code, reply)
    if refused is not None and len(args.to) == 1:
        s.rset()
        return "rcpt", refused[0], refused[1]
    try:
        code, reply = s.data(msg)
    except smtplib.SMTPDataError as e:
        code, reply = e.smtp_code, e.smtp_error
    return "data", code, reply


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--starttls", action="store_true")
    p.add_argument("files", nargs="+")
    args = p.parse_args()

    s = None
    for path in args.files:
        try:
            if s is None:
                s = connect(args)
            stage, code, reply = send_one(s, args, path)
        except (smtplib.SMTPException, OSError) as e:
            stage, code, reply = "error", 0, str(e).encode()
            s = None
        if isinstance(reply, bytes):
            reply = reply.decode("utf-8", "replace")
        print(json.dumps({"file": path, "stage": stage, "code": code, "reply": reply}))
        sys.stdout.flush()
    if s is not None:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            pass


if __name__ == "__main__":
    main()
