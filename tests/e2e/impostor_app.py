"""An impostor for the end-to-end test of the control channel: it listens on the ports of the
core (8090 in tests/e2e/interlock.toml) and the extension (8080), logs every connection as one
JSON line (its port, whether it opened with a TLS handshake, and for plain HTTP the request line
and headers), and answers plain HTTP calls with a forged message that would route
`evil.example`. Run inside a container as `python3 -c <this file>`, with the forged state and
configuration in FORGED_STATE and FORGED_CONFIG. Imports only the standard library."""

import json
import os
import socket
import sys
import threading

TLS_HANDSHAKE = 0x16


def log(record: dict[str, object]) -> None:
    sys.stdout.write("IMPOSTOR " + json.dumps(record) + "\n")
    sys.stdout.flush()


def forged(path: str) -> bytes:
    if "/state" in path:
        return os.environ["FORGED_STATE"].encode()
    if path.startswith("/v1/config"):
        return os.environ["FORGED_CONFIG"].encode()
    return b'{"ok": true}'


def handle(conn: socket.socket, port: int) -> None:
    with conn:
        conn.settimeout(10)
        try:
            data = conn.recv(65536)
        except OSError:
            return
        if not data:
            return
        if data[0] == TLS_HANDSHAKE:
            log({"port": port, "tls": True})
            return  # no certificate to offer: the handshake fails on the caller's side
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
        method, path = [*head[0].split(" "), "", ""][:2]
        headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
        log({"port": port, "tls": False, "method": method, "path": path, "headers": headers})
        body = forged(path)
        answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        conn.sendall(answer + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)


def serve(port: int) -> None:
    listener = socket.create_server(("", port), reuse_port=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn, port), daemon=True).start()


for listen_port in (8080, 8090):
    threading.Thread(target=serve, args=(listen_port,), daemon=True).start()
threading.Event().wait()
