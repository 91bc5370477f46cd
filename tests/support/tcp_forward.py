"""A TCP port that forwards each connection to another (a database server reached late)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.connect_proxy import relay


@contextmanager
def tcp_forward(port: int, target: tuple[str, int]) -> Iterator[None]:
    """While the block runs, 127.0.0.1:``port`` forwards every connection to ``target``."""

    class Forward(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            upstream = socket.create_connection(target, timeout=10)
            threading.Thread(target=relay, args=(upstream, self.request), daemon=True).start()
            relay(self.request, upstream)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Forward)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
