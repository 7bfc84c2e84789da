#!/usr/bin/env python3
"""A service that knows nothing of sessions, behind the gateway's session check.

The gateway forwards a request here only after the reader confirmed the request's session
(`auth = "session"` on the route), and it sets `X-User-Id` to that session's user, and for a
user signed in through an identity provider `X-User-Name`, `X-User-Email` and `X-User-Groups`
(comma-separated), removing every `X-User-*` header the client sent. So this service trusts
those headers and needs neither the session secret, nor Redis, nor the cookie format: any
language can do the same. It must be reachable only through the gateway (bind it to a private
address), or anyone could send the headers.

    GREETER_ADDR=127.0.0.1:8092 python3 examples/greeter/greeter.py

GET /            {"greeting": "Hello, <name, else user id>!", "user": "<user id>"}, and
                 "name", "email" and "groups" (a list) when the gateway sent them
anything else    404 {"error": "not found"}
no X-User-Id     401 {"error": "no user: this service is only reached through the gateway"}

Standard library only. Each request is logged on stdout as one line: METHOD PATH USER FIELDS,
FIELDS being the names of the X-User-* headers it came with (comma-separated, `-` for none).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Greeter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's connection pool expects

    def do_GET(self):
        user = self.header("X-User-Id")
        print(f"{self.command} {self.path} {user or '-'} {self.identity_fields()}", flush=True)
        if self.path.split("?", 1)[0] != "/":
            return self.answer(404, {"error": "not found"})
        if not user:
            return self.answer(
                401, {"error": "no user: this service is only reached through the gateway"}
            )
        name = self.header("X-User-Name")
        body = {"greeting": f"Hello, {name or user}!", "user": user}
        if name:
            body["name"] = name
        email = self.header("X-User-Email")
        if email:
            body["email"] = email
        groups = self.header("X-User-Groups")
        if groups is not None:
            body["groups"] = [group.strip() for group in groups.split(",") if group.strip()]
        self.answer(200, body)

    def identity_fields(self):
        """The names of the identity headers received (any spelling of X-User-*), for the log:
        only those the gateway vouched for should ever be here."""
        names = sorted(
            {
                name.lower()
                for name in self.headers.keys()
                if name.lower().replace("_", "-").startswith("x-user-")
            }
        )
        return ",".join(names) or "-"

    def header(self, name):
        """A header's value as the gateway sent it: UTF-8 (a provider's names may be any),
        which http.server hands over read as Latin-1."""
        value = self.headers.get(name)
        if value is None:
            return None
        try:
            return value.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return value

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
