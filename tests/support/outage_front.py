"""A real HTTP server in front of the API that answers some requests itself with an error status,
as a load balancer or the API does while what stands behind it cannot answer (502, 503, 504), and
forwards every other request to the API as it came."""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

FORWARDED_HEADERS = ("authorization", "content-type")


class OutageFront:
    """Answers ``status`` to every request whose path ends with ``failing_suffix``; forwards the
    rest to ``api_url``. A context manager: it serves on ``url`` inside its block."""

    def __init__(self, api_url: str, status: int, failing_suffix: str) -> None:
        self.status = status
        self.failing_suffix = failing_suffix
        self.failed: list[str] = []  # the paths it answered with ``status``
        self._api = urlsplit(api_url)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_of(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> OutageFront:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, request: BaseHTTPRequestHandler) -> tuple[int, bytes, str]:
        """The status, body and content type of the answer to ``request``."""
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        if request.path.endswith(self.failing_suffix):
            self.failed.append(request.path)
            refusal = {"error": "the service is unavailable", "problems": []}
            return self.status, json.dumps(refusal).encode(), "application/json"
        return self._forward(request, body)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes | None
    ) -> tuple[int, bytes, str]:
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in FORWARDED_HEADERS
        }
        api = http.client.HTTPConnection(self._api.hostname or "", self._api.port, timeout=30)
        try:
            api.request(request.command, request.path, body=body, headers=headers)
            answer = api.getresponse()
            return answer.status, answer.read(), answer.getheader("Content-Type", "")
        finally:
            api.close()


def _handler_of(front: OutageFront) -> type[BaseHTTPRequestHandler]:
    """A request handler class that answers every method through ``front``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, content, content_type = front.answer(self)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_POST = do_PUT = do_DELETE = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass  # the test's output stays the test's

    return Handler
