"""A webhook receiver for transport tests: one POST answered 204, its Host header noted."""

from __future__ import annotations

import ssl
import threading
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
