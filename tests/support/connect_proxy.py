"""A forward proxy that only opens tunnels (``CONNECT``), as an egress proxy does: it notes each
tunnel's target and ``Proxy-Authorization``, refuses with ``refuse_with`` when set, and relays
bytes both ways until either side closes."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class ProxyLog:
    """What the proxy saw: each tunnel's target (``host:port``) and its authorization."""

    targets: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    refuse_with: str | None = None  # e.g. "403 Forbidden"


def relay(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        sink.close()


def _handler(log: ProxyLog) -> type[socketserver.StreamRequestHandler]:
    class Tunnel(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            method, target, _ = self.rfile.readline().decode().split(" ", 2)
            headers = {}
            while (line := self.rfile.readline().decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            log.targets.append(target)
            log.authorizations.append(headers.get("proxy-authorization"))
            if method != "CONNECT" or log.refuse_with is not None:
                self.wfile.write(
                    f"HTTP/1.1 {log.refuse_with or '405 Not Allowed'}\r\n\r\n".encode()
                )
                return
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            threading.Thread(target=relay, args=(upstream, self.connection), daemon=True).start()
            relay(self.connection, upstream)

    return Tunnel


@contextmanager
def connect_proxy() -> Iterator[tuple[ProxyLog, int]]:
    """A running proxy on 127.0.0.1: its log and its port."""
    log = ProxyLog()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _handler(log))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield log, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
