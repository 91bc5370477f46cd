"""Webhooks on the real stack: a local receiver gets signed ``best_changed`` and
``study_finished`` events, failed deliveries are retried, nothing a receiver does breaks the
study, and a receiver that never answers holds up no other receiver's events."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from cli.local_stack import LocalStack
from cli.processes import free_port, wait_until
from service.spec.webhook import MASKED_SECRET
from tests.conftest import BACKENDS
from tests.integration.conftest import unique
from tests.support.connect_proxy import connect_proxy
from tests.support.logs import log_messages

pytestmark = pytest.mark.integration
SECRET = "a-receiver-secret-of-32-chars-xx"
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
SLOW_ANSWER_S = 3.0


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POST; fails the first ``failures``."""

    failures: int = 0
    posts: list[dict[str, Any]] = field(default_factory=list)

    def events(self, study_id: int, status: int = 200) -> list[dict[str, Any]]:
        return [
            post
            for post in self.posts
            if post["status"] == status and post["body"].get("study_id") == study_id
        ]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.endswith("/slow"):
                time.sleep(SLOW_ANSWER_S)  # the receiver's lane waits: later events queue
            status = 500 if state.failures > 0 else 200
            state.failures -= 1
            state.posts.append(
                {
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "raw": raw,
                    "body": json.loads(raw),
                    "status": status,
                }
            )
            self.send_response(status)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}/hooks/hpo"
    server.shutdown()


@pytest.fixture
def silent_receiver() -> Iterator[tuple[list[float], str]]:
    """A receiver on 127.0.0.1 that takes each POST and never answers (until the test ends):
    the delivery waits out its timeout, then its retries. The list holds each POST's arrival."""
    arrivals: list[float] = []
    test_over = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            arrivals.append(time.monotonic())
            test_over.wait(120)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield arrivals, f"http://127.0.0.1:{server.server_address[1]}/hooks/silent"
    test_over.set()
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module", params=BACKENDS)
def hook_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The stack, allowed to deliver to loopback (where the test's receiver listens)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hooks') / 'hpo.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"hooks_{uuid.uuid4().hex[:10]}"
        )
    running = LocalStack(url, settings={"HPO_WEBHOOK_ALLOW_PRIVATE": "true"}).start()
    yield running
    running.stop()


def finish_trial(stack: LocalStack, study_id: int, value: float) -> int:
    client = stack.client()
    trial = client.ask(study_id)
    client.complete(trial["trial_id"], value=value, lease=trial["lease"])
    return int(trial["trial_id"])


def verify(post: dict[str, Any]) -> None:
    """The receiver's side: the signature over timestamp and body, and a recent timestamp."""
    headers = post["headers"]
    timestamp = headers["x-hpo-timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + post["raw"], hashlib.sha256)
    assert hmac.compare_digest(headers["x-hpo-signature"], f"sha256={expected.hexdigest()}")
    assert abs(time.time() - int(timestamp)) < 300  # an old one would be a replay
    assert headers["x-hpo-event"] == post["body"]["event"]


def test_receiver_gets_signed_best_changed_and_study_finished(
    hook_stack: LocalStack, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "budget": {"n_trials": 3},
        "webhook": {"url": url, "secret": SECRET},
    }
    created = hook_stack.client().create_study(spec)
    study_id = created["study_id"]
    assert created["spec"]["webhook"]["secret"] == MASKED_SECRET  # never shown back
    first = finish_trial(hook_stack, study_id, 0.5)
    # Delivered before a better trial ends: an event is sent while its trial is still the best.
    wait_until(lambda: len(state.events(study_id)) >= 1, 30, "the first best_changed")
    finish_trial(hook_stack, study_id, 0.9)  # worse: no event
    third = finish_trial(hook_stack, study_id, 0.2)

    wait_until(lambda: len(state.events(study_id)) >= 3, 30, "three webhook events")
    time.sleep(1)  # nothing more should come
    events = state.events(study_id)
    assert [post["body"]["event"] for post in events] == [
        "best_changed",
        "best_changed",
        "study_finished",
    ]
    for post in events:
        verify(post)
    assert [post["body"]["trial_id"] for post in events[:2]] == [first, third]
    assert events[1]["body"]["value"] == 0.2
    finished = events[2]["body"]
    assert finished["state"] == "complete"
    assert finished["best"]["trial_id"] == third
    assert hook_stack.client().study(study_id)["state"] == "complete"
    assert hook_stack.client().study(study_id)["spec"]["webhook"]["secret"] == MASKED_SECRET


def hold_the_lane(stack: LocalStack, url: str) -> None:
    """An event to ``url``'s receiver that it answers after ``SLOW_ANSWER_S``: the events sent
    to it meanwhile queue behind it (one lane a receiver)."""
    slow = {
        "name": unique("hooks"),
        "space": SPACE,
        "webhook": {"url": f"{url}/slow", "secret": SECRET},
    }
    finish_trial(stack, stack.client().create_study(slow)["study_id"], 0.5)


def test_a_best_beaten_before_its_event_goes_out_is_told_all_the_same(
    hook_stack: LocalStack, receiver: tuple[Receiver, str]
) -> None:
    """The event was built at delivery: a trial no longer the best by then was not told (12 ms
    between two bests, behind a slow receiver, lost the first without a word)."""
    state, url = receiver
    client = hook_stack.client()
    delivered_before = delivered_best_changed(hook_stack)
    hold_the_lane(hook_stack, url)
    spec = {"name": unique("hooks"), "space": SPACE, "webhook": {"url": url, "secret": SECRET}}
    study_id = client.create_study(spec)["study_id"]
    bests = [finish_trial(hook_stack, study_id, value) for value in (0.5, 0.3)]
    worse = finish_trial(hook_stack, study_id, 0.4)  # never the best: no event
    assert state.events(study_id) == []  # queued behind the slow answer
    wait_until(lambda: len(state.events(study_id)) >= 2, 30, "both bests' events")
    time.sleep(1)  # nothing more should come
    told = [post["body"]["trial_id"] for post in state.events(study_id)]
    assert told == bests and worse not in told
    assert delivered_best_changed(hook_stack) == delivered_before + 3  # the slow one's too


def delivered_best_changed(stack: LocalStack) -> float:
    """The API's count of best_changed events delivered (its /metrics)."""
    metrics = requests.get(f"{stack.url}/metrics", timeout=10).text
    series = 'hpo_webhook_deliveries_total{event="best_changed",outcome="delivered"}'
    return float(metrics.split(series, 1)[1].split()[0])


def test_a_study_deleted_before_its_events_go_out_has_them_dropped_without_an_error(
    hook_stack: LocalStack, receiver: tuple[Receiver, str]
) -> None:
    """They failed with a traceback each (Optuna's KeyError for the deleted study's trials)."""
    state, url = receiver
    client = hook_stack.client()
    hold_the_lane(hook_stack, url)
    spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "budget": {"n_trials": 1},
        "webhook": {"url": url, "secret": SECRET},
    }
    study_id = client.create_study(spec)["study_id"]
    finish_trial(hook_stack, study_id, 0.5)
    client.delete(study_id)
    assert hook_stack.api is not None
    wait_until(
        lambda: (
            sum(
                "not sent: its study was deleted" in m
                for m in log_messages(hook_stack.api.log_path)
            )
            >= 2
        ),
        30,
        "both events dropped",
    )
    assert state.events(study_id) == []
    assert not any(m.endswith(" failed") for m in log_messages(hook_stack.api.log_path))


def test_deliveries_leave_through_the_proxy_of_hpo_webhook_proxy(
    tmp_path: Path, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    with connect_proxy() as (proxy, port):
        settings = {
            "HPO_WEBHOOK_ALLOW_PRIVATE": "true",
            "HPO_WEBHOOK_PROXY": f"http://127.0.0.1:{port}",
        }
        stack = LocalStack(f"sqlite:///{tmp_path / 'hpo.db'}", workers=0, settings=settings)
        try:
            stack.start()
            spec = {
                "name": unique("proxied"),
                "space": SPACE,
                "budget": {"n_trials": 1},
                "webhook": {"url": url, "secret": SECRET},
            }
            study_id = stack.client().create_study(spec)["study_id"]
            finish_trial(stack, study_id, 0.5)
            wait_until(lambda: len(state.events(study_id)) >= 2, 30, "two events by the proxy")
        finally:
            stack.stop()
    events = state.events(study_id)
    assert [post["body"]["event"] for post in events] == ["best_changed", "study_finished"]
    for post in events:
        verify(post)
    assert proxy.targets == [url.split("/")[2]] * 2  # one tunnel each, to the receiver


def test_stopping_the_study_sends_study_finished_with_state_stopped(
    hook_stack: LocalStack, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "budget": {"n_trials": 5},
        "webhook": {"url": url, "secret": SECRET, "events": ["study_finished"]},
    }
    study_id = hook_stack.client().create_study(spec)["study_id"]
    best = finish_trial(hook_stack, study_id, 0.7)
    hook_stack.client().stop(study_id)
    wait_until(lambda: state.events(study_id), 30, "the study_finished webhook")
    time.sleep(1)  # and no other (best_changed was not asked for)
    [post] = state.events(study_id)
    verify(post)
    assert post["body"]["event"] == "study_finished"
    assert post["body"]["state"] == "stopped"
    assert post["body"]["best"]["trial_id"] == best


def test_a_failed_delivery_is_retried_with_the_same_delivery_id(
    hook_stack: LocalStack, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    state.failures = 1
    spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "webhook": {"url": url, "secret": SECRET, "events": ["best_changed"]},
    }
    study_id = hook_stack.client().create_study(spec)["study_id"]
    trial_id = finish_trial(hook_stack, study_id, 0.3)
    wait_until(lambda: state.events(study_id), 30, "the retried webhook")
    failed, delivered = state.events(study_id, status=500), state.events(study_id)
    assert len(failed) == 1 and len(delivered) == 1
    assert failed[0]["headers"]["x-hpo-delivery"] == delivered[0]["headers"]["x-hpo-delivery"]
    assert delivered[0]["body"]["trial_id"] == trial_id
    verify(delivered[0])


def test_an_unreachable_receiver_changes_nothing_for_the_study(hook_stack: LocalStack) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "budget": {"n_trials": 2},
        "webhook": {"url": dead, "secret": SECRET},
    }
    failed_before = failed_deliveries(hook_stack)
    study_id = hook_stack.client().create_study(spec)["study_id"]
    best = finish_trial(hook_stack, study_id, 0.4)
    # The delivery fails (and is retried) while the study goes on.
    wait_until(
        lambda: failed_deliveries(hook_stack) > failed_before, 30, "a failed delivery in the log"
    )
    finish_trial(hook_stack, study_id, 0.6)
    study = hook_stack.client().study(study_id)
    assert study["state"] == "complete"
    assert study["best"]["trial_id"] == best
    # The log names the receiver, not the URL (its path or query may hold a key).
    assert hook_stack.api is not None
    assert not any("/nobody-listens" in m for m in log_messages(hook_stack.api.log_path))


def test_a_receiver_that_never_answers_holds_up_no_other_receiver(
    hook_stack: LocalStack,
    receiver: tuple[Receiver, str],
    silent_receiver: tuple[list[float], str],
) -> None:
    """One API process delivers both: the silent receiver's delivery waits about 30 s in all
    (a 5 s timeout, then three retries), and the other receiver's events must not wait behind it."""
    state, url = receiver
    silent_arrivals, silent_url = silent_receiver
    client = hook_stack.client()
    silent_spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "webhook": {"url": silent_url, "secret": SECRET},
    }
    finish_trial(hook_stack, client.create_study(silent_spec)["study_id"], 0.5)
    wait_until(lambda: bool(silent_arrivals), 30, "the silent receiver's first POST")

    spec = {
        "name": unique("hooks"),
        "space": SPACE,
        "budget": {"n_trials": 1},
        "webhook": {"url": url, "secret": SECRET},
    }
    study_id = client.create_study(spec)["study_id"]
    trial_id = finish_trial(hook_stack, study_id, 0.3)
    wait_until(lambda: len(state.events(study_id)) >= 2, 5, "the other receiver's two events")
    # Still waiting on the silent receiver: its retries are not over.
    assert len(silent_arrivals) < 4
    events = state.events(study_id)
    assert [post["body"]["event"] for post in events] == ["best_changed", "study_finished"]
    assert events[0]["body"]["trial_id"] == trial_id
    assert events[1]["body"]["best"]["trial_id"] == trial_id
    for post in events:
        verify(post)


def failed_deliveries(stack: LocalStack) -> int:
    """How many delivery attempts the API has logged as failed."""
    assert stack.api is not None
    return sum("attempt" in m and "failed" in m for m in log_messages(stack.api.log_path))


@pytest.mark.parametrize(
    ("webhook", "field", "words"),
    [
        ({"url": "ftp://example.org/hook", "secret": SECRET}, "webhook.url", "scheme"),
        ({"url": "not a url", "secret": SECRET}, "webhook.url", "URL"),
        ({"url": "https://user:pw@example.org/hook", "secret": SECRET}, "webhook.url", "password"),
        ({"url": "https://example.org:0/hook", "secret": SECRET}, "webhook.url", "port 0"),
        ({"url": "https://example.org/hook", "secret": "short"}, "webhook.secret", "16"),
        (  # a spec copied from an answer and sent back: its secret is the mask
            {"url": "https://example.org/hook", "secret": MASKED_SECRET},
            "webhook.secret",
            "the masked value",
        ),
        (
            {"url": "https://example.org/hook", "secret": SECRET, "events": ["deleted"]},
            "webhook.events",
            "best_changed",
        ),
        (
            {"url": "https://example.org/hook", "secret": SECRET, "events": ["study_finished"] * 2},
            "webhook.events",
            "each event once",
        ),
    ],
)
def test_a_bad_webhook_is_refused_naming_the_field(
    hook_stack: LocalStack, webhook: dict[str, Any], field: str, words: str
) -> None:
    body = {"name": unique("hooks"), "space": SPACE, "webhook": webhook}
    answer = requests.post(f"{hook_stack.url}/studies", json=body, timeout=10)
    assert answer.status_code == 422, answer.text
    problems = answer.json()["problems"]
    assert any(p["field"].startswith(field) and words in p["problem"] for p in problems), problems


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.5/hook",
        "https://[::1]/hook",
        "http://169.254.169.254/latest",
        "http://localhost:9000/hook",
        "http://localhost.:9000/hook",
    ],
)
def test_a_receiver_written_as_a_non_public_address_is_refused_on_submission(
    stack: LocalStack, url: str
) -> None:
    """The stack delivers to public addresses only (HPO_WEBHOOK_ALLOW_PRIVATE unset): a URL whose
    host is such an address, as written, could never get an event."""
    name = unique("private-hook")
    body = {"name": name, "space": SPACE, "webhook": {"url": url, "secret": SECRET}}
    answer = requests.post(f"{stack.url}/studies", json=body, timeout=10)
    assert answer.status_code == 422, answer.text
    [problem] = answer.json()["problems"]
    assert problem["field"] == "webhook.url" and "not a public address" in problem["problem"]
    assert name not in [s["name"] for s in stack.client().studies()]


@pytest.mark.parametrize("url", ["https://93.184.215.14/hook", "https://hooks.example.org/hook"])
def test_a_public_address_or_a_name_is_taken_on_submission(stack: LocalStack, url: str) -> None:
    """A name is checked at each delivery, not at submission: what it resolves to may change."""
    body = {
        "name": unique("public-hook"),
        "space": SPACE,
        "webhook": {"url": url, "secret": SECRET},
    }
    answer = requests.post(f"{stack.url}/studies", json=body, timeout=10)
    assert answer.status_code == 201, answer.text
