"""A webhook receiver for transport tests: one POST answered 204, its Host header noted."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import trustme


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


def trickling_server(
    for_s: float, tls: ssl.SSLContext | None = None, answer: bytes = b"HTTP/1.1 200 OK\r\n"
) -> socket.socket:
    """A listening socket on 127.0.0.1 (TLS with ``tls``) whose one connection is answered with
    ``answer``, then a byte every 0.2 s for ``for_s`` seconds: an answer that never ends."""
    listener = socket.create_server(("127.0.0.1", 0))

    def trickle() -> None:
        connection, _ = listener.accept()
        with contextlib.suppress(OSError):  # the client cut it off (or the handshake failed)
            if tls is not None:
                connection = tls.wrap_socket(connection, server_side=True)
            with connection:
                connection.recv(65536)
                connection.sendall(answer)
                ends = time.monotonic() + for_s
                while time.monotonic() < ends:
                    connection.sendall(b"X")
                    time.sleep(0.2)

    threading.Thread(target=trickle, daemon=True).start()
    return listener


def certified(
    host: str, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> ssl.SSLContext:
    """A server's TLS context with a certificate for ``host`` from a throwaway CA, which the
    default context (the webhook's) trusts for the test (``SSL_CERT_FILE``)."""
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(host).configure_cert(tls)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    return tls
