"""Who may read ``/metrics`` and ``/docs`` on an API that requires tokens (Flask's test client)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from service.json_logs import log_context, set_log_context
from service.settings import Settings
from tests.support.dispatchers import DoNothingDispatcher

API_TOKEN = "api-token-for-this-test"
METRICS_TOKEN = "metrics-token-for-this-test"


def api(tmp_path: Path, **settings: object) -> FlaskClient:
    config = Settings(
        database_url=f"sqlite:///{tmp_path / 'hpo.db'}",
        broker_url="redis://127.0.0.1:1/0",  # nothing listens: the queue depth is left out
        reaper_interval_s=0,
        api_tokens=[API_TOKEN],
        **settings,  # type: ignore[arg-type]
    )
    return create_app(config, dispatcher=DoNothingDispatcher()).test_client()


def test_metrics_and_docs_are_open_while_the_api_needs_a_token(tmp_path: Path) -> None:
    client = api(tmp_path)
    assert client.get("/studies").status_code == 401
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"  # once
    assert "hpo_studies" in metrics.text
    assert "hpo_queue_depth" not in metrics.text  # the broker is out of reach
    assert "hpo_workers_wanted" not in metrics.text  # unknown: not told as the busy alone
    assert client.get("/docs").status_code == 200
    slash = client.get("/docs/")  # was 401 (an unknown address), and 404 with a token
    assert (slash.status_code, slash.location) == (308, "../docs")
    assert client.get("/swagger/js/swagger-ui-bundle.js").status_code == 200
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        (f"Bearer {API_TOKEN}", 401),
        ("Bearer wrong", 401),
        (f"Basic {METRICS_TOKEN}", 401),
        (f"Bearer {METRICS_TOKEN}", 200),
        (f"bearer {METRICS_TOKEN}", 200),  # the scheme is case-insensitive (RFC 9110)
    ],
)
def test_metrics_token_guards_metrics(tmp_path: Path, header: str | None, status: int) -> None:
    client = api(tmp_path, metrics_token=METRICS_TOKEN)
    answer = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert answer.status_code == status
    if status == 401:
        assert answer.json["problems"][0]["field"] == "Authorization"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_api_takes_its_token_whatever_the_scheme_s_case(tmp_path: Path, scheme: str) -> None:
    client = api(tmp_path)
    assert (
        client.get("/studies", headers={"Authorization": f"{scheme} {API_TOKEN}"}).status_code
        == 200
    )
    assert client.get("/studies", headers={"Authorization": f"{scheme} wrong"}).status_code == 401


def test_a_worker_token_from_the_settings_acts_as_a_worker(tmp_path: Path) -> None:
    client = api(tmp_path, worker_tokens=["a-worker-token-from-the-settings"])
    worker = {"Authorization": "Bearer a-worker-token-from-the-settings"}
    assert client.get("/studies", headers=worker).status_code == 403  # not a user's endpoint
    claimed = client.post("/trials/1/claim", json={"holder": "h"}, headers=worker)
    assert claimed.status_code == 404, claimed.get_data(as_text=True)  # let in: no such trial
    assert client.post("/trials/1/claim", json={"holder": "h"}).status_code == 401


def test_a_request_refused_for_its_token_is_logged_with_its_own_ids(tmp_path: Path) -> None:
    """The token check ran before the ids were set: the refusal's lines (its access line among
    them) named the thread's previous request's study."""
    client = api(tmp_path)
    client.get("/studies/3", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert log_context() == (3, None)
    refused = client.get("/trials/7/checkpoint", headers={"Authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert log_context() == (None, 7)
    set_log_context()  # this thread's context as the next test expects it: none
