"""Webhooks through an egress proxy (``HPO_WEBHOOK_PROXY``): the proxy is asked for a tunnel to
the address checked, never to resolve the receiver's name; the request inside keeps the URL's
host, and https runs end to end to that host; a refused tunnel is a failed delivery."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from urllib.error import URLError
from urllib.request import Request

import pydantic
import pytest

from service.settings import Settings
from service.webhook_transport import Proxy, ProxyRefused
from service.webhooks import post_to_first_answering
from tests.support.connect_proxy import ProxyLog, connect_proxy
from tests.support.receivers import answering_server, certified

HOST = "hooks.invalid"  # never resolves: only a tunnel to the pinned address reaches the server


@pytest.fixture
def proxy() -> Iterator[tuple[ProxyLog, Proxy]]:
    with connect_proxy() as (log, port):
        yield log, Proxy.from_url(f"http://hooker:p%40ss@127.0.0.1:{port}")


def post(url: str, address: str | None, proxy: Proxy) -> int:
    request = Request(url, data=b"{}", method="POST")
    return post_to_first_answering([address], request, proxy)


def delivered(
    url_host: str, address: str | None, through: Proxy, tls: ssl.SSLContext | None = None
) -> tuple[list[str], int]:
    """A POST through ``through`` to a receiver on 127.0.0.1, its URL naming ``url_host``
    (https with ``tls``), answered 204: the Host headers the receiver saw, and its port."""
    hosts: list[str] = []
    server = answering_server(hosts, tls)
    scheme = "http" if tls is None else "https"
    assert post(f"{scheme}://{url_host}:{server.server_port}/hook", address, through) == 204
    server.server_close()
    return hosts, server.server_port


def test_a_post_goes_through_a_tunnel_to_the_address_checked_with_the_urls_host(
    proxy: tuple[ProxyLog, Proxy],
) -> None:
    log, through = proxy
    hosts, port = delivered(HOST, "127.0.0.1", through)
    assert log.targets == [f"127.0.0.1:{port}"]  # the proxy resolves nothing
    assert hosts == [f"{HOST}:{port}"]


def test_the_proxy_gets_the_credentials_of_its_url(proxy: tuple[ProxyLog, Proxy]) -> None:
    log, through = proxy
    delivered(HOST, "127.0.0.1", through)
    assert log.authorizations == ["Basic aG9va2VyOnBAc3M="]  # hooker:p@ss


def test_https_runs_through_the_tunnel_to_the_urls_host(
    proxy: tuple[ProxyLog, Proxy],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    log, through = proxy
    hosts, port = delivered(
        HOST, "127.0.0.1", through, certified(HOST, monkeypatch, tmp_path_factory)
    )
    assert log.targets == [f"127.0.0.1:{port}"]
    assert hosts == [f"{HOST}:{port}"]


def test_a_certificate_of_another_host_fails_through_the_tunnel_too(
    proxy: tuple[ProxyLog, Proxy],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _, through = proxy
    tls = certified("elsewhere.invalid", monkeypatch, tmp_path_factory)
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


def test_a_proxy_that_answers_no_http_is_a_failed_delivery() -> None:
    """A TLS or SOCKS port named as the proxy: its answer is no HTTP status line."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_garbage() -> None:
        listener.accept()[0].sendall(b"\x16\x03\x01 not http\r\n\r\n")

    threading.Thread(target=answer_garbage, daemon=True).start()
    through = Proxy.from_url(f"http://127.0.0.1:{listener.getsockname()[1]}")
    with pytest.raises(URLError) as refused:
        post(f"http://{HOST}:8080/hook", "127.0.0.1", through)
    assert isinstance(refused.value.reason, ProxyRefused)
    listener.close()


def test_where_private_addresses_are_allowed_the_tunnel_goes_to_the_urls_host(
    proxy: tuple[ProxyLog, Proxy],
) -> None:
    log, through = proxy
    _, port = delivered("localhost", None, through)
    assert log.targets == [f"localhost:{port}"]


@pytest.mark.parametrize(
    "url",
    [
        "https://proxy:3128",
        "socks5://proxy:1080",
        "http://proxy",
        "http://proxy:0",
        "http://a b:3128",
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
    with pytest.raises(pydantic.ValidationError) as refused:  # and out of its refusal
        Settings(webhook_proxy="https://hooker:secret@proxy:3128")
    assert "secret" not in str(refused.value)
