"""The HTTP client reads the environment (proxies, ``NO_PROXY``, ``.netrc``) once, when it is made,
for the API's URL, and no longer on each request."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from client import HPOError, HPOJSONClient, ServiceUnreachable

MOVED, GARBLED = 301, 2  # study ids the server answers with a redirect, and with an HTML page


class _StudyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.endswith(f"/studies/{MOVED}"):
            self._send(301, b"moved", "text/plain", {"Location": "https://elsewhere.example/"})
            return
        if self.path.endswith(f"/studies/{GARBLED}"):
            self._send(200, b"<html>a proxy's sign-in page</html>", "text/html")
            return
        authorization = self.headers.get("Authorization")
        answer = {"study_id": 1, "path": self.path, "authorization": authorization}
        self._send(200, json.dumps(answer).encode(), "application/json")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
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


def direct(monkeypatch: pytest.MonkeyPatch, url: str, token: str | None = None) -> HPOJSONClient:
    """A client of ``url`` made with this machine exempt from any proxy; it does not retry."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    return HPOJSONClient(url, token=token, retries=0)


def test_a_proxy_in_the_environment_is_taken_for_the_api_s_url(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", api_url)  # the test server stands in for the proxy
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = HPOJSONClient("http://hpo.example:8000", retries=0)
    # A proxy is sent the whole URL; the API itself only the path.
    assert client.study(1)["path"] == "http://hpo.example:8000/studies/1"


def test_a_proxy_named_without_a_scheme_is_an_http_proxy(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", api_url.removeprefix("http://"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = HPOJSONClient("http://hpo.example:8000", retries=0)
    assert client.study(1)["path"] == "http://hpo.example:8000/studies/1"


def test_no_proxy_covering_the_api_s_host_leaves_it_direct(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = HPOJSONClient(api_url, retries=0)
    assert client.study(1)["path"] == "/studies/1"


def test_requests_do_not_read_the_environment_again(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = direct(monkeypatch, api_url)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # read now, the call would fail
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy", raising=False)
    assert client.study(1) == {"study_id": 1, "path": "/studies/1", "authorization": None}
    assert client.study(1)["study_id"] == 1


def test_a_netrc_entry_is_used_without_a_token_and_never_replaces_one(
    api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    basic = "Basic " + base64.b64encode(b"someone:secret").decode()
    assert direct(monkeypatch, api_url).study(1)["authorization"] == basic
    assert direct(monkeypatch, api_url, "abc").study(1)["authorization"] == "Bearer abc"


def test_credentials_in_the_url_go_as_basic_auth_not_in_the_path(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_credentials = api_url.replace("http://", "http://someone:secret@")
    answer = direct(monkeypatch, with_credentials).study(1)
    assert answer["authorization"] == "Basic " + base64.b64encode(b"someone:secret").decode()
    assert answer["path"] == "/studies/1"


def test_a_redirect_is_answered_to_the_caller_not_followed(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(HPOError) as refused:
        direct(monkeypatch, api_url).study(MOVED)
    assert refused.value.status == 301


def test_an_answer_that_is_not_json_is_no_answer(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ServiceUnreachable) as garbled:
        direct(monkeypatch, api_url).study(GARBLED)
    assert isinstance(garbled.value.reason, ValueError)


def test_an_api_out_of_reach_raises_service_unreachable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = HPOJSONClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(ServiceUnreachable):
        client.study(1)
