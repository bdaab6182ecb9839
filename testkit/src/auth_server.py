"""An authentication server for relay's tests, on Python's http.server: MediaMTX's
HTTP auth hook at POST /auth and a JSON Web Key Set at GET /jwks.json.

The hook allows user `hook-user` with password `hook-pass`, and the token
`hook-token`, to do anything; it answers 403 to everyone else. Each request's JSON
body is printed on stdout, one line each, after the first line, which is the port.

Usage: auth_server.py JWKS_FILE
"""

import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/auth":
            return self.answer(404, b"not here")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        request = json.loads(body)
        print(json.dumps(request, sort_keys=True), flush=True)
        allowed = (request.get("user"), request.get("password")) == ("hook-user", "hook-pass") or (
            request.get("token") == "hook-token"
        )
        self.answer(200 if allowed else 403, b"ok" if allowed else b"denied by the hook")

    def do_GET(self):
        if self.path != "/jwks.json":
            return self.answer(404, b"not here")
        with open(sys.argv[1], "rb") as f:
            self.answer(200, f.read(), "application/json")

    def answer(self, status, body, content_type="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
