"""A webhook receiver for transport tests: one POST answered 204, its Host header noted."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def answering_server(hosts: list[str], tls: ssl.SSLContext | None = None) -> HTTPServer:
    """A server on 127.0.0.1 (https with ``tls``) that answers one POST with 204, noting its
    Host header in ``hosts``."""

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.handle_request, daemon=True).start()
    return server


def trickling_server(for_s: float) -> socket.socket:
    """A listening socket on 127.0.0.1 whose one connection is answered a byte at a time, one
    every 0.2 s for ``for_s`` seconds: a status line, then a header that never ends."""
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            ends = time.monotonic() + for_s
            with contextlib.suppress(OSError):  # the client cut it off
                while time.monotonic() < ends:
                    connection.sendall(b"X")
                    time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    return listener
