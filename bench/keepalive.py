#!/usr/bin/env python3
"""Send exactly N requests, one after another, on ONE keep-alive connection.

    usage: keepalive.py [--method M] [--cafile PEM] [--warmup W --between CMD]
                        HOST PORT PATH COOKIE N [TIMEOUT_S]

Used by bench/run.sh and bench/cost.sh to drive a process running under valgrind with a fixed
request count (wrk runs for a duration, not a count). Every response must be 200 and is read
completely; the connection is reopened (and counted on stderr) if the server closes it.

  --method M      GET (default) or e.g. POST (sent with an empty body)
  --cafile PEM    speak HTTPS, trusting this certificate (no ALPN offered: HTTP/1.1)
  --warmup W      first send W requests, then run CMD (e.g. `callgrind_control -z PID`), then
  --between CMD   the N counted ones, all on the same connection: a TLS handshake or a new
                  connection is then not part of the N

Exit 0 when every request got a 200 (and CMD exited 0), 1 otherwise.
"""
import argparse
import http.client
import shlex
import ssl
import subprocess
import sys


class Client:
    def __init__(self, args):
        self.args = args
        self.headers = {"Cookie": args.cookie} if args.cookie else {}
        if args.method != "GET":
            self.headers["Content-Length"] = "0"
        self.context = None
        if args.cafile:
            self.context = ssl.create_default_context(cafile=args.cafile)
        self.reconnects = 0
        self.conn = self.connect()

    def connect(self):
        a = self.args
        if self.context is not None:
            return http.client.HTTPSConnection(a.host, a.port, timeout=a.timeout, context=self.context)
        return http.client.HTTPConnection(a.host, a.port, timeout=a.timeout)

    def send(self, n):
        for i in range(n):
            self.conn.request(self.args.method, self.args.path, headers=self.headers)
            resp = self.conn.getresponse()
            resp.read()
            if resp.status != 200:
                print(f"request {i}: status {resp.status}", file=sys.stderr)
                return False
            if resp.will_close:
                self.conn.close()
                self.conn = self.connect()
                self.reconnects += 1
        return True


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="GET")
    p.add_argument("--cafile")
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--between")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("path")
    p.add_argument("cookie")
    p.add_argument("n", type=int)
    p.add_argument("timeout", type=float, nargs="?", default=30.0)
    args = p.parse_args()

    client = Client(args)
    if not client.send(args.warmup):
        return 1
    if args.between and subprocess.run(shlex.split(args.between), stdout=sys.stderr).returncode != 0:
        print(f"{args.between}: failed", file=sys.stderr)
        return 1
    if not client.send(args.n):
        return 1
    client.conn.close()
    if client.reconnects:
        print(f"{client.reconnects} reconnects", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
