#!/usr/bin/env python3
"""A service that knows nothing of sessions, behind the gateway's session check.

The gateway forwards a request here only after the reader confirmed the request's session
(`auth = "session"` on the route), and it sets `X-User-Id` to that session's user, replacing
whatever the client sent. So this service trusts the header and needs neither the session
secret, nor Redis, nor the cookie format: any language can do the same. It must be reachable
only through the gateway (bind it to a private address), or anyone could send the header.

    GREETER_ADDR=127.0.0.1:8092 python3 examples/greeter/greeter.py

GET /            {"greeting": "Hello, <user id>!", "user": "<user id>"}
anything else    404 {"error": "not found"}
no X-User-Id     401 {"error": "no user: this service is only reached through the gateway"}

Standard library only. Each request is logged on stdout as one line: METHOD PATH USER.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Greeter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's connection pool expects

    def do_GET(self):
        user = self.headers.get("X-User-Id")
        print(f"{self.command} {self.path} {user or '-'}", flush=True)
        if self.path.split("?", 1)[0] != "/":
            return self.answer(404, {"error": "not found"})
        if not user:
            return self.answer(
                401, {"error": "no user: this service is only reached through the gateway"}
            )
        self.answer(200, {"greeting": f"Hello, {user}!", "user": user})

    def answer(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_):
        pass  # one line per request is printed by do_GET


def main():
    host, _, port = os.environ.get("GREETER_ADDR", "127.0.0.1:8092").rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Greeter)
    print(f"greeter listening on {host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
