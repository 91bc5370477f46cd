"""The HTTP client reads the environment's proxy settings once, when it is made, for the API's
URL, and no longer on each request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from client.http_client import HPOJSONClient


class _StudyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"study_id": 1, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def api_url() -> Iterator[str]:
    """A real HTTP server on this machine answering every GET with a study."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StudyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def sessions(client: HPOJSONClient) -> list[requests.Session]:
    return [client._session, client._idempotent]


def test_a_proxy_in_the_environment_is_taken_for_the_api_s_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = HPOJSONClient("http://hpo.example:8000")
    for session in sessions(client):
        assert session.proxies["http"] == "http://proxy.example:3128"
        assert session.trust_env is False


def test_no_proxy_covering_the_api_s_host_leaves_it_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "hpo.example")
    client = HPOJSONClient("http://hpo.example:8000")
    for session in sessions(client):
        assert "http" not in session.proxies


def test_requests_do_not_read_the_environment_again(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = HPOJSONClient(api_url)

    def read_again(*_: object, **__: object) -> dict[str, str]:
        raise AssertionError("the environment was read for a request")

    monkeypatch.setattr(requests.sessions, "get_environ_proxies", read_again)
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", read_again)
    assert client.study(1) == {"study_id": 1, "path": "/studies/1"}
    assert client.study(1)["study_id"] == 1


def test_a_netrc_entry_is_used_without_a_token_and_never_replaces_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine hpo.example login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    without_token = HPOJSONClient("http://hpo.example:8000")
    assert without_token._session.auth == ("someone", "secret")
    with_token = HPOJSONClient("http://hpo.example:8000", token="abc")
    for session in sessions(with_token):
        assert session.auth is None
        assert session.headers["Authorization"] == "Bearer abc"
