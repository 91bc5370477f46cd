"""Webhooks through an egress proxy (``HPO_WEBHOOK_PROXY``): the proxy is asked for a tunnel to
the address checked, never to resolve the receiver's name; the request inside keeps the URL's
host, and https runs end to end to that host; a refused tunnel is a failed delivery."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.error import URLError
from urllib.request import Request

import pydantic
import pytest
import trustme

from service.settings import Settings
from service.webhook_transport import Proxy, ProxyRefused
from service.webhooks import post_to_first_answering
from tests.support.connect_proxy import ProxyLog, connect_proxy

HOST = "hooks.invalid"  # never resolves: only a tunnel to the pinned address reaches the server


def answering_server(hosts: list[str], tls: ssl.SSLContext | None = None) -> HTTPServer:
    """A server on 127.0.0.1 that answers one POST with 204, noting its Host header."""

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


@pytest.fixture
def proxy() -> Iterator[tuple[ProxyLog, Proxy]]:
    with connect_proxy() as (log, port):
        yield log, Proxy.from_url(f"http://hooker:p%40ss@127.0.0.1:{port}")


def post(url: str, address: str | None, proxy: Proxy) -> int:
    request = Request(url, data=b"{}", method="POST")
    return post_to_first_answering([address], request, proxy)


def test_a_post_goes_through_a_tunnel_to_the_address_checked_with_the_urls_host(
    proxy: tuple[ProxyLog, Proxy],
) -> None:
    log, through = proxy
    hosts: list[str] = []
    server = answering_server(hosts)
    port = server.server_port
    assert post(f"http://{HOST}:{port}/hook", "127.0.0.1", through) == 204
    server.server_close()
    assert log.targets == [f"127.0.0.1:{port}"]  # the proxy resolves nothing
    assert hosts == [f"{HOST}:{port}"]


def test_the_proxy_gets_the_credentials_of_its_url(proxy: tuple[ProxyLog, Proxy]) -> None:
    log, through = proxy
    server = answering_server([])
    post(f"http://{HOST}:{server.server_port}/hook", "127.0.0.1", through)
    server.server_close()
    assert log.authorizations == ["Basic aG9va2VyOnBAc3M="]  # hooker:p@ss


def test_https_runs_through_the_tunnel_to_the_urls_host(
    proxy: tuple[ProxyLog, Proxy],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    log, through = proxy
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HOST).configure_cert(tls)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # the default context's trust, as a CA's
    hosts: list[str] = []
    server = answering_server(hosts, tls)
    port = server.server_port
    assert post(f"https://{HOST}:{port}/hook", "127.0.0.1", through) == 204
    server.server_close()
    assert log.targets == [f"127.0.0.1:{port}"]
    assert hosts == [f"{HOST}:{port}"]


def test_a_certificate_of_another_host_fails_through_the_tunnel_too(
    proxy: tuple[ProxyLog, Proxy],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _, through = proxy
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("elsewhere.invalid").configure_cert(tls)
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    server = answering_server([], tls)
    with pytest.raises(OSError, match="certificate"):
        post(f"https://{HOST}:{server.server_port}/hook", "127.0.0.1", through)
    server.server_close()


def test_a_tunnel_the_proxy_refuses_is_a_failed_delivery(proxy: tuple[ProxyLog, Proxy]) -> None:
    log, through = proxy
    log.refuse_with = "403 Forbidden"
    with pytest.raises(URLError, match="403 Forbidden") as refused:
        post(f"http://{HOST}:8080/hook", "127.0.0.1", through)
    assert isinstance(refused.value.reason, ProxyRefused)  # urllib's URLError wraps it


def test_where_private_addresses_are_allowed_the_tunnel_goes_to_the_urls_host(
    proxy: tuple[ProxyLog, Proxy],
) -> None:
    log, through = proxy
    hosts: list[str] = []
    server = answering_server(hosts)
    port = server.server_port
    assert post(f"http://localhost:{port}/hook", None, through) == 204
    server.server_close()
    assert log.targets == [f"localhost:{port}"]


@pytest.mark.parametrize(
    "url",
    [
        "https://proxy:3128",
        "socks5://proxy:1080",
        "http://proxy",
        "http://proxy:3128/path",
        "proxy",
    ],
)
def test_a_proxy_setting_of_another_form_is_refused_naming_the_form(url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"http://\[user:password@\]host:port"):
        Settings(webhook_proxy=url)


def test_the_proxy_setting_keeps_its_password_out_of_the_settings_shown() -> None:
    settings = Settings(webhook_proxy="http://hooker:secret@proxy:3128")
    assert "secret" not in repr(settings)
