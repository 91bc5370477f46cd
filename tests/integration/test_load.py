"""Many clients at once: 100 concurrent reporters against the API on PostgreSQL (fault test 6).

Every reporter is an external program on its own connection: it asks a trial, reports its steps
with the lease token, completes it, and starts again, until the deadline. The test asserts that no
answer is an error (the clients do not retry, so a 503 shows), that no reporter is stuck, that the
database connections stay within what the pools allow, and that every trial a reporter finished is
recorded exactly once, as it was finished.

The issue asks for several minutes of load. ``HPO_LOAD_TEST_SECONDS`` sets the duration: 120 s by
default, what CI runs on 2 cores (about 3 minutes for the whole test); set it to 600 for a long run.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from http.client import RemoteDisconnected
from typing import Any, TypeVar

import psycopg
import pytest
import urllib3

from cli.local_stack import LocalStack
from client import HPOJSONClient, ServiceUnreachable
from client.http_client import HPOError
from service.spec.study_spec import MAX_CONCURRENT_TRIALS, MAX_TRIALS
from tests.support.logs import log_records
from tests.support.postgres_server import PostgresServer

DURATION_S = float(os.environ.get("HPO_LOAD_TEST_SECONDS", "120"))
REPORTERS = 100
STUDIES = 4  # half without a pruner, half with Hyperband
STEPS = 5  # reports per trial
API_PROCESSES = 2
API_THREADS = 16
REQUEST_TIMEOUT_S = 30.0
# A reporter finishes the trial it is in at the deadline: STEPS + 1 more requests. Past this grace
# period (longer than one request's timeout) a reporter still running is stuck.
GRACE_S = 2 * REQUEST_TIMEOUT_S
MAX_ERRORS_SHOWN = 5
# A reporter gives up after this many errors (an API that is down fails the test in seconds).
MAX_ERRORS_PER_REPORTER = 10

# Connections one API process may open (service/storage/database.py): two engines, the service's
# and Optuna's RDBStorage, each a QueuePool of pool_size 10 plus max_overflow 10. The advisory
# locks (service/storage/study_lock.py: the study locks and the reaper's) take their connection
# from the service engine, so they add nothing; nor does the reaper thread, which uses the same
# pools. gunicorn's master process does not load the app. Hence processes x 2 x (10 + 10) = 80.
ENGINES_PER_PROCESS = 2
POOL_SIZE = 10
MAX_OVERFLOW = 10
MAX_CONNECTIONS = API_PROCESSES * ENGINES_PER_PROCESS * (POOL_SIZE + MAX_OVERFLOW)
# Once the load stops every connection goes back to its pool, which keeps at most pool_size of
# them open and closes the overflow ones: more than this when idle would be a leak.
MAX_IDLE_CONNECTIONS = API_PROCESSES * ENGINES_PER_PROCESS * POOL_SIZE

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(int(DURATION_S + GRACE_S + 240)),
]

T = TypeVar("T")


@dataclass
class Tally:
    """What one reporter did and saw (each thread has its own: no lock needed)."""

    requests: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    asked: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    completed: dict[int, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    pruned: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))
    errors: list[str] = field(default_factory=list)
    resets: list[str] = field(default_factory=list)


class Abandoned(Exception):
    """A request of the trial failed (recorded in the tally): the reporter starts another trial."""


@dataclass
class ConnectionSampler:
    """Counts the connections to one database every second, in a thread of its own."""

    server: PostgresServer
    database: str
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ConnectionSampler:
        self._thread = threading.Thread(target=self._run, name="pg-connections", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def count(self) -> int:
        """The connections open to the database now (one query, on a connection of its own)."""
        with self._connect() as conn:
            return self._count(conn)

    def _run(self) -> None:
        with self._connect() as conn:
            while not self._stop.is_set():
                self.samples.append(self._count(conn))
                self._stop.wait(1.0)

    def _connect(self) -> psycopg.Connection[Any]:
        url = f"postgresql://postgres@127.0.0.1:{self.server.port}/postgres"
        return psycopg.connect(url, autocommit=True)

    def _count(self, conn: psycopg.Connection[Any]) -> int:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        row = conn.execute(query, (self.database,)).fetchone()
        return int(row[0]) if row else 0


def study_spec(index: int) -> dict[str, Any]:
    """An external-program study whose budget the load cannot spend (so no ask gets a 409)."""
    pruner: dict[str, Any] = (
        {"name": "none"}
        if index % 2 == 0
        else {"name": "hyperband", "min_resource": 1, "max_resource": STEPS}
    )
    return {
        "name": f"load-{index}-{uuid.uuid4().hex[:8]}",
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "layers": {"type": "int", "low": 1, "high": 4},
        },
        "sampler": {"name": "random", "seed": index},
        "pruner": pruner,
        "budget": {"n_trials": MAX_TRIALS, "max_concurrent_trials": MAX_CONCURRENT_TRIALS},
    }


def call(tally: Tally, kind: str, what: str, request: Callable[[], T]) -> T:
    """Make one request, timing it; an exception or error status is recorded and abandons the trial.

    A request whose connection was reset before any answer is made once more, and counted apart:
    see ``is_keepalive_reset``.
    """
    for attempt in (1, 2):
        started = time.perf_counter()
        tally.requests += 1
        try:
            answer = request()
        except Exception as error:
            if attempt == 1 and is_keepalive_reset(error):
                tally.resets.append(f"{what}: {describe(error)}")
                continue
            tally.errors.append(f"{what}: {describe(error)}")
            raise Abandoned from error
        tally.latencies[kind].append(time.perf_counter() - started)
        return answer
    raise AssertionError("unreachable")


def is_keepalive_reset(error: Exception) -> bool:
    """Whether the connection broke before any answer came: closed or reset by the server.

    gunicorn closes a kept-alive connection once it has been idle ``keepalive`` seconds (2), without
    looking for a request that arrived meanwhile (``murder_keepalived`` in its gthread worker): a
    request sent on it at that moment is reset, unread. HTTP clients send such a request again
    (RFC 9112, 9.3.1); ``HPOJSONClient`` does for its idempotent calls, but with ``retries=0`` it cannot.
    The API log (no worker died) and the trial counts (no trial made twice) prove afterwards that the
    server had not read the request.
    """
    if not isinstance(error, ServiceUnreachable):
        return False
    reason = getattr(error.reason, "reason", error.reason)  # urllib3's MaxRetryError wraps it
    if not isinstance(reason, urllib3.exceptions.ProtocolError) or len(reason.args) < 2:
        return False
    if reason.args[0] != "Connection aborted.":  # "Connection broken": an answer had begun
        return False
    return isinstance(reason.args[1], ConnectionResetError | BrokenPipeError | RemoteDisconnected)


def describe(error: Exception) -> str:
    """An error as the failure message shows it: status and body, or the exception."""
    if isinstance(error, HPOError):
        return f"HTTP {error.status} {error.body!r}"
    return f"{type(error).__name__}: {error}"


def run_one_trial(client: HPOJSONClient, study_id: int, rng: random.Random, tally: Tally) -> None:
    """Ask, report ``STEPS`` values with the lease, complete (unless pruned)."""
    assignment = call(
        tally, "ask", f"POST /studies/{study_id}/trials", lambda: client.ask(study_id)
    )
    trial_id, lease = assignment["trial_id"], assignment["lease"]
    tally.asked[study_id].add(trial_id)
    for step in range(1, STEPS + 1):
        value = rng.random()
        prune = call(
            tally,
            "report",
            f"POST /trials/{trial_id}/report step {step}",
            partial(client.report, trial_id, step, value, lease),
        )
        if prune:
            tally.pruned[study_id].add(trial_id)
            return
    final = rng.random()
    answer = call(
        tally,
        "complete",
        f"POST /trials/{trial_id}/complete",
        lambda: client.complete(trial_id, value=final, lease=lease),
    )
    if answer["state"] != "complete" or answer["value"] != final:
        tally.errors.append(f"POST /trials/{trial_id}/complete answered {answer!r}")
    tally.completed[study_id][trial_id] = final


def reporter(index: int, url: str, study_ids: list[int], deadline: float, tally: Tally) -> None:
    """One client: trials one after the other, on the studies in turn, until the deadline."""
    client = HPOJSONClient(url, timeout_s=REQUEST_TIMEOUT_S, retries=0)
    rng = random.Random(index)
    turn = index
    while time.monotonic() < deadline and len(tally.errors) < MAX_ERRORS_PER_REPORTER:
        study_id = study_ids[turn % len(study_ids)]
        turn += 1
        try:
            run_one_trial(client, study_id, rng, tally)
        except Abandoned:
            time.sleep(0.1)


def run_reporters(url: str, study_ids: list[int], seconds: float) -> tuple[list[Tally], list[str]]:
    """Run ``REPORTERS`` threads for ``seconds``; their tallies and the names of those stuck.

    A request the API does not answer ends in a read timeout (an error) after ``REQUEST_TIMEOUT_S``;
    a reporter still alive ``GRACE_S`` after the deadline is stuck in the client itself.
    """
    deadline = time.monotonic() + seconds
    tallies = [Tally() for _ in range(REPORTERS)]
    threads = [
        threading.Thread(
            target=reporter,
            args=(i, url, study_ids, deadline, tallies[i]),
            name=f"reporter-{i}",
            daemon=True,
        )
        for i in range(REPORTERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, deadline + GRACE_S - time.monotonic()))
    return tallies, [thread.name for thread in threads if thread.is_alive()]


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (0.5, 0.99) of ``values``; NaN for none."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def settled_connection_count(sampler: ConnectionSampler, bound: int, timeout_s: float = 30) -> int:
    """The connections open once the last answers' connections are back in their pools: the
    first count within ``bound``, or the last one after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (count := sampler.count()) > bound and time.monotonic() < deadline:
        time.sleep(0.5)
    return count


def finished_any(tally: Tally) -> bool:
    """Whether the reporter completed a trial or had one pruned."""
    return any(tally.completed.values()) or any(tally.pruned.values())


def merged(tallies: list[Tally]) -> Tally:
    """The reporters' tallies as one."""
    total = Tally()
    for tally in tallies:
        total.requests += tally.requests
        total.errors.extend(tally.errors)
        total.resets.extend(tally.resets)
        for kind, values in tally.latencies.items():
            total.latencies[kind].extend(values)
        for study_id, ids in tally.asked.items():
            total.asked[study_id] |= ids
        for study_id, done in tally.completed.items():
            total.completed[study_id].update(done)
        for study_id, ids in tally.pruned.items():
            total.pruned[study_id] |= ids
    return total


def recording_mismatches(client: HPOJSONClient, study_id: int, total: Tally) -> list[str]:
    """How the study's trials, as the API has them, differ from what the reporters did."""
    trials = client.trials(study_id)
    ids = [t["trial_id"] for t in trials]
    by_state: dict[str, dict[int, Any]] = defaultdict(dict)
    for trial in trials:
        by_state[trial["state"]][trial["trial_id"]] = trial["value"]
    counts = client.study(study_id)["counts"]
    found: list[str] = []
    if len(ids) != len(set(ids)):
        found.append(f"study {study_id}: a trial is listed twice")
    if set(ids) != total.asked[study_id]:
        found.append(f"study {study_id}: {len(ids)} trials, {len(total.asked[study_id])} asked")
    if by_state["complete"] != total.completed[study_id]:
        found.append(
            f"study {study_id}: {len(by_state['complete'])} complete trials (or values) recorded, "
            f"{len(total.completed[study_id])} completed"
        )
    if set(by_state["pruned"]) != total.pruned[study_id]:
        found.append(
            f"study {study_id}: {len(by_state['pruned'])} pruned recorded, "
            f"{len(total.pruned[study_id])} pruned"
        )
    expected_counts = (len(total.completed[study_id]), len(total.pruned[study_id]), 0, 0)
    actual_counts = (counts["complete"], counts["pruned"], counts["running"], counts["fail"])
    if actual_counts != expected_counts:
        found.append(
            f"study {study_id}: counts {counts}, expected (complete, pruned, running, fail) "
            f"{expected_counts}"
        )
    return found


@pytest.fixture
def load_database(postgres_server: PostgresServer) -> tuple[str, str]:
    """A fresh PostgreSQL database: its name and URL."""
    name = f"load_{uuid.uuid4().hex[:10]}"
    return name, postgres_server.create_database(name)


@pytest.fixture
def load_stack(load_database: tuple[str, str]) -> Iterator[LocalStack]:
    """The API alone (external programs need no worker), on PostgreSQL, several processes."""
    settings = {"HPO_API_PROCESSES": str(API_PROCESSES), "HPO_API_THREADS": str(API_THREADS)}
    stack = LocalStack(load_database[1], workers=0, settings=settings)
    try:
        yield stack.start()  # stopped also when it does not start: Redis would be left running
    finally:
        stack.stop()


def api_log_problems(stack: LocalStack, lines: int = 60) -> str:
    """The API log less its access lines of 2xx answers, its INFO lines and the frames of its
    tracebacks: errors, warnings, and each exception's type and message."""
    if stack.api is None:
        return ""
    kept = [
        f"{record.get('level')} {record.get('logger', '')}: {record.get('message')}"
        for record in log_records(stack.api.log_path)
        if _is_problem(record)
    ]
    return "\n".join(kept[:lines])


def _is_problem(record: dict[str, Any]) -> bool:
    message = str(record.get("message", ""))
    if record.get("level") == "RAW":  # a traceback's frames are indented: keep its last line
        return bool(message.strip()) and not message[0].isspace()
    if record.get("logger") == "gunicorn.access":
        return '" 20' not in message
    return record.get("level") not in ("DEBUG", "INFO")


def create_studies(client: HPOJSONClient, stack: LocalStack) -> list[int]:
    """The studies the reporters share; a failure shows the API log (the API may not have booted)."""
    try:
        return [client.create_study(study_spec(i))["study_id"] for i in range(STUDIES)]
    except Exception as error:
        raise AssertionError(
            f"could not create the studies: {describe(error)}\n"
            f"API log less its access and INFO lines:\n{api_log_problems(stack)}"
        ) from error


def milliseconds(values: list[float]) -> str:
    """p50/p99 of latencies in seconds, in milliseconds."""
    return f"{percentile(values, 0.5) * 1000:.0f}/{percentile(values, 0.99) * 1000:.0f} ms"


def figures(total: Tally, elapsed: float, connections: list[int], idle: int) -> str:
    """The line the test prints: throughput, latencies as the clients saw them, connections."""
    completed = sum(len(done) for done in total.completed.values())
    pruned = sum(len(ids) for ids in total.pruned.values())
    return (
        f"{REPORTERS} reporters for {elapsed:.0f} s: {total.requests} requests "
        f"({total.requests / elapsed:.0f}/s), {completed} trials completed, {pruned} pruned, "
        f"{len(total.errors)} errors, {len(total.resets)} connection resets sent again; "
        f"latency p50/p99: ask {milliseconds(total.latencies['ask'])}, "
        f"report {milliseconds(total.latencies['report'])}, "
        f"complete {milliseconds(total.latencies['complete'])}; "
        f"database connections: max {max(connections, default=0)} (bound {MAX_CONNECTIONS}), "
        f"{idle} once idle (bound {MAX_IDLE_CONNECTIONS})"
    )


def test_a_hundred_concurrent_reporters_get_no_error_and_stay_within_the_pools(
    load_stack: LocalStack, load_database: tuple[str, str], postgres_server: PostgresServer
) -> None:
    """No error answer, no reporter stuck, connections within the pools, every trial recorded once."""
    client = HPOJSONClient(load_stack.url, timeout_s=REQUEST_TIMEOUT_S, retries=0)
    study_ids = create_studies(client, load_stack)
    sampler = ConnectionSampler(postgres_server, load_database[0]).start()
    started = time.monotonic()
    try:
        tallies, stuck = run_reporters(load_stack.url, study_ids, DURATION_S)
    finally:
        sampler.stop()
    elapsed = time.monotonic() - started
    idle_connections = settled_connection_count(sampler, MAX_IDLE_CONNECTIONS)
    total = merged(tallies)
    print(f"\n{figures(total, elapsed, sampler.samples, idle_connections)}")
    if total.resets:
        print(f"connection resets, sent again: {total.resets[:MAX_ERRORS_SHOWN]}")
    log_problems = api_log_problems(load_stack)
    log_name = load_stack.api.log_path if load_stack.api else None
    assert not stuck, f"{len(stuck)} reporters stuck past the deadline: {stuck[:10]}"
    assert not total.errors, (
        f"{len(total.errors)} errors, the first: {total.errors[:MAX_ERRORS_SHOWN]}\n"
        f"API log ({log_name}) less its access and INFO lines:\n{log_problems}"
    )
    assert not log_problems, f"the API log ({log_name}) has errors or warnings:\n{log_problems}"
    # Each reporter finished a trial at least: the load was there for the whole run.
    idle_reporters = [n for n, tally in enumerate(tallies) if not finished_any(tally)]
    assert not idle_reporters, f"reporters that finished no trial: {idle_reporters[:10]}"
    assert max(sampler.samples) <= MAX_CONNECTIONS, sampler.samples
    assert idle_connections <= MAX_IDLE_CONNECTIONS
    mismatches = [m for s in study_ids for m in recording_mismatches(client, s, total)]
    assert not mismatches, mismatches
