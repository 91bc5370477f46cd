"""A webhook's POST goes to the address its host was checked at, not to a second DNS answer.

``check_address`` resolves the URL's host and refuses a non-public address; urllib would then
resolve the host again to connect, and a name whose answer changes between the two (DNS
rebinding) would reach the address the check refused. The opener here connects to the address
checked; the ``Host`` header and, for https, the TLS server name and the certificate's check keep
the URL's host. Redirects are not followed (a redirect could lead anywhere).

A socket's timeout bounds each read, not the answer: a receiver that sends a byte every few
seconds would hold the delivery as long as it liked. A ``Deadline`` bounds the whole attempt: once
it passes, the connection's socket is shut down, whatever is under way.

Where deliveries must leave through an HTTP proxy (``HPO_WEBHOOK_PROXY``), the connection is a
tunnel the proxy opens (``CONNECT``) to that same address, for http and https receivers alike:
the proxy never resolves the name itself, and TLS runs end to end, to the URL's host.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import re
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

PROXY_FORM = "http://[user:password@]host:port"
_HOST = re.compile(r"[A-Za-z0-9.-]+|[0-9A-Fa-f:.]+")  # a name, an IPv4 or an IPv6 address


class ProxyRefused(OSError):
    """The proxy did not open the tunnel (its answer to ``CONNECT`` was not 200)."""


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy that opens tunnels: its host, port and ``Proxy-Authorization``, if any."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """``ValueError`` naming the expected form unless ``url`` is one (``PROXY_FORM``)."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = None
        host = parts.hostname or ""
        if parts.scheme != "http" or not _HOST.fullmatch(host) or not port:  # port 0 too
            raise ValueError(f"must be {PROXY_FORM}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"must be {PROXY_FORM}, with no path")
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(host, port, authorization)

    def tunnel(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A socket the proxy joined to ``host:port``; ``ProxyRefused`` (an ``OSError``) where it
        would not, ``OSError`` where it cannot be reached."""
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if self.authorization is not None:
            lines.append(f"Proxy-Authorization: {self.authorization}")
        sock = socket.create_connection((self.host, self.port), timeout)
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            answer = http.client.HTTPResponse(sock, method="CONNECT")
            try:
                answer.begin()  # reads the status line and headers only: the tunnel is silent
            except http.client.HTTPException as error:  # no HTTP proxy there (TLS, SOCKS, …)
                raise ProxyRefused(
                    f"the proxy's answer to CONNECT is not HTTP: {error!r}"
                ) from None
            if answer.status != 200:
                raise ProxyRefused(f"the proxy answered {answer.status} {answer.reason} to CONNECT")
        except BaseException:
            sock.close()
            raise
        return sock


class Deadline:
    """A whole attempt's time limit: each connection it watches is shut down once it passes (a
    read under way then ends, as at the end of the stream), and ``passed`` says so.

    It holds a duplicate of each connection's descriptor, and shuts the connection down through
    it: TLS takes the socket over (the plain socket object is emptied, its shutdown a no-op), and
    the duplicate keeps the descriptor from being handed to another connection before ``cancel``.
    """

    def __init__(self, seconds: float) -> None:
        self.ends = time.monotonic() + seconds
        self.passed = False
        self._timers: list[threading.Timer] = []
        self._held: list[socket.socket] = []
        # A cut under way and ``cancel`` take turns: the duplicate is never closed (its number
        # free for another connection) while the cut still uses it.
        self._turn = threading.Lock()
        self._cancelled = False

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock``'s connection down when the deadline passes (unless ``cancel`` comes
        first), whatever wraps it meanwhile."""
        held = socket.socket(fileno=os.dup(sock.fileno()))
        self._held.append(held)
        timer = threading.Timer(max(0.0, self.ends - time.monotonic()), self._cut, (held,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def cancel(self) -> None:
        """The attempt is over: shut nothing down, let the duplicates go."""
        with self._turn:
            self._cancelled = True
            for timer in self._timers:
                timer.cancel()
            for held in self._held:
                held.close()

    def _cut(self, held: socket.socket) -> None:
        with self._turn:
            if self._cancelled:
                return
            self.passed = True
            with contextlib.suppress(OSError):  # the peer closed it meanwhile
                held.shutdown(socket.SHUT_RDWR)


def _open(host: str, port: int, timeout: float | None, proxy: Proxy | None) -> socket.socket:
    if proxy is None:
        return socket.create_connection((host, port), timeout)
    return proxy.tunnel(host, port, timeout)


@dataclass(frozen=True)
class _Route:
    """Where a connection goes: ``address`` (none: the URL's host), through ``proxy`` if any,
    within ``deadline`` if any."""

    address: str | None
    proxy: Proxy | None
    deadline: Deadline | None = None

    def open(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A socket to the route's address (or ``host``), watched by its deadline."""
        sock = _open(self.address or host, port, timeout, self.proxy)
        if self.deadline is not None:
            try:
                self.deadline.watch(sock)
            except BaseException:  # no descriptor left to duplicate: the socket is not kept
                sock.close()
                raise
        return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, route: _Route, host: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.route = route

    def connect(self) -> None:
        self.sock = self.route.open(self.host, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, route: _Route, host: str, *, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(host, context=context, **kwargs)
        self.route = route
        self.tls = context

    def connect(self) -> None:
        plain = self.route.open(self.host, self.port, self.timeout)  # its handshake watched too
        self.sock = self.tls.wrap_socket(plain, server_hostname=self.host)


class _PinnedHTTP(urllib.request.HTTPHandler):
    def __init__(self, route: _Route) -> None:
        super().__init__()
        self.route = route

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_PinnedHTTPConnection, self.route), req)


class _PinnedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, route: _Route) -> None:
        super().__init__()
        self.route = route

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(_PinnedHTTPSConnection, self.route)
        return self.do_open(connection, req, context=ssl.create_default_context())


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead to an address the check refused: it counts as a failed delivery."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener(
    address: str | None, proxy: Proxy | None = None, deadline: Deadline | None = None
) -> urllib.request.OpenerDirector:
    """An opener that connects to ``address`` whatever the URL's host resolves to, through a
    tunnel of ``proxy`` where one is given, never through a proxy of the environment
    (``HTTP_PROXY``: it would resolve the host itself), its sockets watched by ``deadline``;
    ``address`` ``None`` (private addresses allowed): the URL's host, through ``proxy``'s tunnel,
    or resolved here."""
    no_proxy_of_the_environment = urllib.request.ProxyHandler({})
    route = _Route(address, proxy, deadline)
    pinned = (_PinnedHTTP(route), _PinnedHTTPS(route))
    return urllib.request.build_opener(no_proxy_of_the_environment, *pinned, NoRedirects)
