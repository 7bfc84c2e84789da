#!/usr/bin/env python3
"""Send exactly N `GET PATH` requests, one after another, on ONE keep-alive connection.

    usage: keepalive_get.py HOST PORT PATH COOKIE N [TIMEOUT_S]

Used by bench/run.sh to drive a proxy running under valgrind with a fixed request count (wrk
runs for a duration, not a count). Every response must be 200 and is read completely; the
connection is reopened (and counted on stderr) if the server closes it. Exit 0 when all N
requests got a 200, 1 otherwise.
"""
import http.client
import sys


def main() -> int:
    host, port, path, cookie, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    timeout = float(sys.argv[6]) if len(sys.argv) > 6 else 30.0
    headers = {"Cookie": cookie} if cookie else {}
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    reconnects = 0
    for i in range(n):
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            print(f"request {i}: status {resp.status}", file=sys.stderr)
            return 1
        if resp.will_close:
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            reconnects += 1
    conn.close()
    if reconnects:
        print(f"{reconnects} reconnects", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
