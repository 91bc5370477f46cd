"""How long the client's retries last: long enough for a trial's lease in the worker, a minute
in the CLI."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from urllib3.exceptions import MaxRetryError, NewConnectionError

from client import HPOError, HPOJSONClient
from client.http_client import DEFAULT_RETRIES, _retry_policy, retries_lasting
from service.errors import RETRY_AFTER_S
from service.settings import Settings
from workers.celery_app import worker_client


def urllib3_waits(retries: int) -> list[float]:
    """The backoff urllib3 waits before each retry of a call refused ``retries`` + 1 times."""
    policy = _retry_policy(retries, idempotent=True)
    refused = NewConnectionError(None, "connection refused")  # type: ignore[arg-type]
    waits = []
    for _ in range(retries):
        policy = policy.increment("POST", "/trials/1/reports", error=refused)
        waits.append(policy.get_backoff_time())
    with pytest.raises(MaxRetryError):  # no retry past those
        policy.increment("POST", "/trials/1/reports", error=refused)
    return waits


@pytest.mark.parametrize("outage_s", [0.5, 60, 150, 600])
def test_the_retries_lasting_an_outage_are_the_fewest_whose_waits_outlast_it(
    outage_s: float,
) -> None:
    waits = urllib3_waits(retries_lasting(outage_s))
    assert sum(waits) >= outage_s
    assert sum(waits[:-1]) < outage_s


def test_retries_counted_with_the_services_retry_after_outlast_the_outage_at_that_wait() -> None:
    waits = urllib3_waits(retries_lasting(150, longest_wait_s=RETRY_AFTER_S))
    # A 503 answered throughout waits its Retry-After each time instead of the backoff.
    assert RETRY_AFTER_S * len(waits) >= 150
    assert sum(min(wait, RETRY_AFTER_S) for wait in waits) >= 150


class _Unavailable(BaseHTTPRequestHandler):
    """Answers 503 without a Retry-After (a proxy's answer): the client waits its backoff."""

    def do_POST(self) -> None:
        self.server.answered.append(time.monotonic())  # type: ignore[attr-defined]
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


@pytest.fixture
def unavailable_url() -> Iterator[tuple[str, list[float]]]:
    """A real HTTP server that answers every POST 503; its URL and when it answered."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    server.answered = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.answered  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_a_call_with_the_retries_lasting_an_outage_gives_up_after_it(
    unavailable_url: tuple[str, list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, answered = unavailable_url
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = HPOJSONClient(url, retries=retries_lasting(1.0))  # waits 0, 0.5 and 1 s
    with pytest.raises(HPOError) as refused:
        client.heartbeat(1, "lease")
    assert refused.value.status == 503
    assert len(answered) == 4
    assert answered[-1] - answered[0] >= 1.0


def test_the_workers_client_retries_past_a_trials_lease_and_the_clis_about_a_minute() -> None:
    settings = Settings(lease_ttl_s=120, service_url="http://127.0.0.1:1")
    retries = worker_client(settings).retries
    # Refused connections (an API restarting) wait the backoff; a 503 its Retry-After.
    assert sum(urllib3_waits(retries)) >= settings.lease_ttl_s
    assert RETRY_AFTER_S * retries >= settings.lease_ttl_s
    assert HPOJSONClient(settings.service_url).retries == DEFAULT_RETRIES == retries_lasting(60)
