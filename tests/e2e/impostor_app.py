"""An impostor for the end-to-end test of the control channel: a plain HTTP server on the ports
of the core (8090 in tests/e2e/interlock.toml) and the extension (8080) that logs every request
(method, path, headers) as one JSON line and answers every call with a forged message that
would route `evil.example`. Run inside a container as `python3 -c <this file>`, with the forged
state and configuration in FORGED_STATE and FORGED_CONFIG. Imports only the standard library."""

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Impostor(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        record = {"method": self.command, "path": self.path, "headers": dict(self.headers.items())}
        sys.stdout.write("IMPOSTOR " + json.dumps(record) + "\n")
        sys.stdout.flush()
        if "/state" in self.path:
            body = os.environ["FORGED_STATE"].encode()
        elif self.path.startswith("/v1/config"):
            body = os.environ["FORGED_CONFIG"].encode()
        else:
            body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 - http.server's names

    def log_message(self, *args: object) -> None:
        pass


for port in (8080, 8090):
    server = ThreadingHTTPServer(("", port), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
threading.Event().wait()
