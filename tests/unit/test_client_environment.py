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

MOVED, GARBLED, CUT = 301, 2, 3  # study ids answered with a redirect, an HTML page, a cut answer
ASKED: list[str] = []  # the paths the server was asked for, in order


class _StudyHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ASKED.append(self.path)
        if self.path.endswith(f"/studies/{MOVED}"):
            self._send(301, b"moved", "text/plain", {"Location": "https://elsewhere.example/"})
            return
        if self.path.endswith(f"/studies/{GARBLED}"):
            self._send(200, b"<html>a proxy's sign-in page</html>", "text/html")
            return
        if self.path.endswith(f"/studies/{CUT}"):  # cut after the status line: no length, no body
            self.wfile.write(b"HTTP/1.1 200 OK\r\nServer: cut\r\n\r\n")
            self.close_connection = True
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
    assert "redirected to https://elsewhere.example/" in str(refused.value)  # was "301: "


@pytest.mark.parametrize(
    ("study_id", "told"),
    [
        (GARBLED, "(status 200, text/html, 35 bytes)"),
        (CUT, "(status 200, no Content-Type, 0 bytes)"),
    ],
)
def test_an_answer_that_is_not_json_is_asked_for_again_then_no_answer(
    api_url: str, monkeypatch: pytest.MonkeyPatch, study_id: int, told: str
) -> None:
    """A GET, idempotent: asked for three times in all, as a broken answer is."""
    ASKED.clear()
    with pytest.raises(ServiceUnreachable) as garbled:
        direct(monkeypatch, api_url).study(study_id)
    assert isinstance(garbled.value.reason, ValueError)
    assert f"the answer to GET /studies/{study_id} is not the API's JSON {told}" in str(
        garbled.value
    )
    assert len(ASKED) == 3 and set(ASKED) == {f"/studies/{study_id}"}


def test_a_call_not_asked_again_says_so_where_its_answer_was_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """urllib3 said "Max retries exceeded" of a create that it never repeats."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def take_and_drop() -> None:
            connection, _ = server.accept()
            connection.recv(65536)
            connection.close()

        threading.Thread(target=take_and_drop, daemon=True).start()
        with pytest.raises(ServiceUnreachable) as lost:
            HPOJSONClient(f"http://127.0.0.1:{port}", retries=3).create_study({"name": "x"})
    assert str(lost.value).startswith("the answer to POST /studies was lost on the way")
    assert "not asked again, as a repeat could do it twice" in str(lost.value)


def test_an_api_out_of_reach_raises_service_unreachable() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = HPOJSONClient(f"http://127.0.0.1:{port}", retries=0)
    with pytest.raises(ServiceUnreachable):
        client.study(1)
