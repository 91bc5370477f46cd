"""No trial lost or stuck when a worker, Redis, the API or PostgreSQL dies: real processes, real kills.

Each test prints its figures and asserts them. Leases are short here (seconds) so that the tests
run in CI time; production defaults are minutes.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from sqlalchemy import select

from api.dispatch import CeleryDispatcher
from cli.local_stack import LocalStack
from cli.processes import wait_until
from client import HPOJSONClient
from service.dispatch import TrialAssignment
from service.settings import Settings
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord
from tests.support.logs import log_messages
from tests.support.postgres_server import PostgresServer
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EPOCHS = 20


def fault_stack(database_url: str, lease_ttl_s: float) -> LocalStack:
    settings = {"HPO_LEASE_TTL_S": str(lease_ttl_s), "HPO_REAPER_INTERVAL_S": "0.5"}
    return LocalStack(database_url, workers=2, settings=settings).start()


def study(n_trials: int, concurrent: int = 2, max_retries: int = 2) -> dict[str, Any]:
    """Trials of about a second each on 2 cores: long enough to be hit mid-epoch."""
    return {
        "name": f"fault-{uuid.uuid4().hex[:8]}",
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": [16]},
        },
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {
            "n_trials": n_trials,
            "max_concurrent_trials": concurrent,
            "max_retries": max_retries,
        },
        "trainer": {"name": "mlp", "dataset": "digits", "epochs": EPOCHS, "device": "cpu"},
    }


def wait_until_done(
    client: HPOJSONClient,
    study_id: int,
    stack: LocalStack,
    while_running: Callable[[], None] = lambda: None,
    timeout_s: float = 300,
) -> dict[str, Any]:
    """The study once it ends, ``while_running`` called every 0.3 s until then (the fault)."""
    return wait_for_end(
        client, study_id, stack, timeout_s=timeout_s, poll_s=0.3, while_running=while_running
    )


def pool_pids(stack: LocalStack) -> set[int]:
    """The worker's pool processes."""
    assert stack.worker is not None
    return {child.pid for child in psutil.Process(stack.worker.process.pid).children()}


def lease_holding_pids(database: Database) -> set[int]:
    """The processes holding a trial's lease now (a holder is ``host:pid:delivery``)."""
    query = select(TrialLeaseRecord.holder).where(TrialLeaseRecord.token.is_not(None))
    with database.session() as session:
        holders = session.scalars(query).all()
    return {int(holder.split(":")[1]) for holder in holders if holder}


def finished_exactly(current: dict[str, Any], n_trials: int) -> None:
    counts = current["counts"]
    assert current["state"] == "complete", current
    assert counts["running"] == 0 and counts["waiting"] == 0, counts
    assert counts["complete"] + counts["pruned"] == n_trials, counts
    assert counts["fail"] == 0, counts


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('faults') / 'hpo.db'}"


def test_sigkill_of_worker_processes_mid_trial_loses_no_trial(
    postgres_server: PostgresServer,
) -> None:
    database_url = postgres_server.create_database(f"kill_{uuid.uuid4().hex[:8]}")
    leases = Database(database_url)
    stack = fault_stack(database_url, lease_ttl_s=3)
    # The number of finished trials at each kill: one kill per trial finished since the last
    # (whatever the machine's speed, the study's 24 trials leave room for the ten).
    kills: list[int] = []
    choose = random.Random(0)

    def kill_a_busy_pool_process() -> None:
        counts = client.study(created["study_id"])["counts"]
        finished = counts["complete"] + counts["pruned"]
        if len(kills) >= 10 or (kills and finished <= kills[-1]):
            return
        # A pool process killed while it starts stops Celery's worker altogether ("Could not
        # start worker processes"): only those holding a trial's lease, so well past their start.
        busy = lease_holding_pids(leases) & pool_pids(stack)
        if busy:
            with contextlib.suppress(psutil.NoSuchProcess):  # it ended meanwhile
                psutil.Process(choose.choice(sorted(busy))).kill()
                kills.append(finished)

    try:
        client = stack.client()
        created = client.create_study(study(n_trials=24, max_retries=10))
        wait_for_first_report(client, created["study_id"])  # the pool is up and training
        final = wait_until_done(client, created["study_id"], stack, kill_a_busy_pool_process)
        trials = client.trials(created["study_id"])
    finally:
        stack.stop()
        leases.dispose()
    retried = [t for t in trials if t["retried_by"] is not None]
    print(
        f"\n{len(kills)} SIGKILLs, {len(retried)} trials lost with their process and re-run, "
        f"counts {final['counts']}"
    )
    finished_exactly(final, 24)
    assert len(kills) >= 5
    assert retried, "no kill hit a running trial"
    by_id = {t["trial_id"]: t for t in trials}
    for lost in retried:
        assert lost["fail_reason"].startswith("lease expired")
        assert "(worker lost, or the API out of its reach)" in lost["fail_reason"]
        assert by_id[lost["retried_by"]]["params"] == lost["params"]


def test_the_same_trial_delivered_twice_is_trained_once(sqlite_url: str) -> None:
    stack = fault_stack(sqlite_url, lease_ttl_s=10)
    try:
        client = stack.client()
        created = client.create_study(study(n_trials=3, concurrent=1))
        first = wait_for_first_report(client, created["study_id"])
        duplicate = TrialAssignment(
            study_id=created["study_id"],
            trial_id=first["trial_id"],
            number=first["number"],
            params=first["params"],
            trainer=created["spec"]["trainer"],
            seed=first["seed"],
        )
        dispatcher = CeleryDispatcher(Settings(broker_url=stack.redis.url))
        dispatcher.dispatch(duplicate)  # while the first delivery trains it
        final = wait_until_done(client, created["study_id"], stack)
        dispatcher.dispatch(duplicate)  # after it finished
        assert stack.api is not None
        api_log = stack.api.log_path
        claim_refused = f'POST /trials/{first["trial_id"]}/claim HTTP/1.1" 409'
        # Refused at the claim, the duplicate never trains (a claim taken would never be refused).
        wait_until(lambda: access_log(api_log).count(claim_refused) >= 2, 30, "the 2nd refusal")
        trials = client.trials(created["study_id"])
        served = access_log(api_log)
    finally:
        stack.stop()
    refused_reports = len(
        re.findall(rf'POST /trials/{first["trial_id"]}/reports? [^"]*" 409', served)
    )
    refused_claims = served.count(claim_refused)
    print(f"\ntrial {first['trial_id']}: {refused_claims} duplicate claims refused")
    finished_exactly(final, 3)
    assert len(trials) == 3
    # Trained once: the duplicates were refused at the claim, so no second run reported.
    assert refused_claims == 2 and refused_reports == 0
    assert len(trials[0]["intermediate_values"]) == EPOCHS


def access_log(path: Path) -> str:
    return "\n".join(log_messages(path))


def wait_for_first_report(client: HPOJSONClient, study_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        trials = client.trials(study_id)
        if trials and trials[0]["intermediate_values"]:
            return trials[0]
        time.sleep(0.05)
    raise AssertionError("the first trial never reported")


def test_a_redis_restart_mid_study_loses_no_trial(sqlite_url: str) -> None:
    stack = fault_stack(sqlite_url, lease_ttl_s=20)
    restarted: list[float] = []

    def restart_redis_once() -> None:
        if not restarted and client.study(created["study_id"])["counts"]["complete"] >= 2:
            stack.redis.stop()
            time.sleep(3)
            stack.redis.start()
            restarted.append(time.monotonic())

    try:
        client = stack.client()
        created = client.create_study(study(n_trials=10))
        final = wait_until_done(client, created["study_id"], stack, restart_redis_once)
    finally:
        stack.stop()
    print(f"\nRedis restarted once; counts {final['counts']}")
    assert restarted
    finished_exactly(final, 10)
    assert final["counts"]["retried"] == 0


def test_an_api_restart_mid_study_loses_and_doubles_nothing(
    postgres_server: PostgresServer,
) -> None:
    # A lease outlasting the outage (stop, 3 s, start) with room for a slow machine.
    stack = fault_stack(
        postgres_server.create_database(f"api_{uuid.uuid4().hex[:8]}"), lease_ttl_s=60
    )
    restarted: list[float] = []

    def restart_api_once() -> None:
        if not restarted and client.study(created["study_id"])["counts"]["complete"] >= 2:
            stack.stop_api()
            time.sleep(3)
            stack.start_api()
            restarted.append(time.monotonic())

    try:
        client = stack.client()
        created = client.create_study(study(n_trials=10))
        final = wait_until_done(client, created["study_id"], stack, restart_api_once)
        trials = client.trials(created["study_id"])
    finally:
        stack.stop()
    print(f"\nAPI restarted once; counts {final['counts']}")
    assert restarted
    finished_exactly(final, 10)
    assert final["counts"]["retried"] == 0
    for trial in trials:
        assert sorted(int(step) for step in trial["intermediate_values"]) == list(
            range(1, EPOCHS + 1)
        )


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.remove()


def test_a_postgresql_restart_answers_503_meanwhile_and_the_study_completes(
    own_postgres: PostgresServer,
) -> None:
    stack = fault_stack(own_postgres.create_database("hpo"), lease_ttl_s=30)
    outage: list[requests.Response] = []

    def restart_postgres_once() -> None:
        if not outage and client.study(created["study_id"])["counts"]["complete"] >= 2:
            own_postgres.stop()
            outage.append(requests.get(f"{stack.url}/studies/{created['study_id']}", timeout=30))
            outage.append(requests.get(f"{stack.url}/studies", timeout=30))
            time.sleep(2)
            own_postgres.start_server()

    try:
        client = stack.client()
        created = client.create_study(study(n_trials=10))
        final = wait_until_done(client, created["study_id"], stack, restart_postgres_once)
    finally:
        stack.stop()
    print(
        f"\nPostgreSQL restarted once; during the outage: {[r.status_code for r in outage]}; "
        f"counts {final['counts']}"
    )
    assert [r.status_code for r in outage] == [503, 503]
    assert all(r.headers.get("Retry-After") for r in outage)
    finished_exactly(final, 10)
