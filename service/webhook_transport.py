"""A webhook's POST goes to the address its host was checked at, not to a second DNS answer.

``check_address`` resolves the URL's host and refuses a non-public address; urllib would then
resolve the host again to connect, and a name whose answer changes between the two (DNS
rebinding) would reach the address the check refused. The opener here connects to the address
checked; the ``Host`` header and, for https, the TLS server name and the certificate's check keep
the URL's host. Redirects are not followed (a redirect could lead anywhere).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.request
from functools import partial
from typing import Any


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, address: str, host: str, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self.pinned_address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.pinned_address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, address: str, host: str, *, context: ssl.SSLContext, **kwargs: Any) -> None:
        super().__init__(host, context=context, **kwargs)
        self.pinned_address = address
        self.tls = context

    def connect(self) -> None:
        plain = socket.create_connection((self.pinned_address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(plain, server_hostname=self.host)


class _PinnedHTTP(urllib.request.HTTPHandler):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(partial(_PinnedHTTPConnection, self.address), req)


class _PinnedHTTPS(urllib.request.HTTPSHandler):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = partial(_PinnedHTTPSConnection, self.address)
        return self.do_open(connection, req, context=ssl.create_default_context())


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead to an address the check refused: it counts as a failed delivery."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def opener(address: str | None) -> urllib.request.OpenerDirector:
    """An opener that connects to ``address`` whatever the URL's host resolves to, never through
    a proxy of the environment (which would resolve the host itself); ``None``: the host's own
    resolution and the environment's proxies, where private addresses are allowed."""
    if address is None:
        return urllib.request.build_opener(NoRedirects)
    pinned = (_PinnedHTTP(address), _PinnedHTTPS(address))
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), *pinned, NoRedirects)
