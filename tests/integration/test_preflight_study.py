"""Pre-flight checks run on a real worker before a study's trials, and can refuse a study."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cli.local_stack import LocalStack
from client import HPOError, HPOJSONClient
from tests.conftest import BACKENDS
from tests.integration.conftest import unique

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHECKS = ["initial_loss", "overfit_tiny_subset", "gradient"]


def small_study(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": unique(name),
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 2, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "digits", "epochs": 2},
        **extra,
    }


def wait_for(
    client: HPOJSONClient, study_id: int, done: Any, timeout_s: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        study = client.study(study_id)
        if done(study):
            return study
        time.sleep(0.3)
    raise AssertionError(f"study {study_id} did not get there: {client.study(study_id)}")


def checks_finished(study: dict[str, Any]) -> bool:
    return study["preflight"] is not None and study["preflight"]["state"] != "running"


def checks_acted_on(study: dict[str, Any]) -> bool:
    """The checks ended and a held study left ``preparing`` (the job's end is written first)."""
    return checks_finished(study) and study["state"] != "preparing"


def wait_for_trials(client: HPOJSONClient, study_id: int, timeout_s: float = 30) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if trials := client.trials(study_id):
            return trials
        time.sleep(0.2)
    raise AssertionError(f"study {study_id} started no trial in {timeout_s} s")


def test_a_built_in_trainer_runs_the_checks_by_default_and_shows_them(stack: LocalStack) -> None:
    client = stack.client()
    created = client.create_study(small_study("preflight-default"))
    assert created["preflight"]["state"] == "running"
    study = wait_for(client, created["study_id"], checks_finished)
    preflight = study["preflight"]
    assert preflight["state"] == "passed", preflight
    assert [check["name"] for check in preflight["checks"]] == CHECKS
    initial, overfit, gradient = preflight["checks"]
    assert abs(initial["figures"]["mean_loss"] - initial["figures"]["expected_ln_c"]) < 0.5
    assert len(initial["figures"]["losses"]) == 3
    assert overfit["figures"]["final_loss"] < overfit["figures"]["target_loss"]
    assert gradient["figures"]["max_relative_error"] <= gradient["figures"]["tolerance"]
    finished = wait_for(client, created["study_id"], lambda s: s["state"] == "complete")
    assert finished["counts"].get("complete") == 2


def test_a_failed_check_with_refuse_on_failure_starts_no_trial(stack: LocalStack) -> None:
    client = stack.client()
    # One hidden unit for ten classes: the model cannot overfit ten samples, for real.
    preflight = {"refuse_on_failure": True, "params": {"hidden": 1}}
    created = client.create_study(small_study("preflight-refused", preflight=preflight))
    assert created["state"] == "preparing"  # held while the checks run
    study = wait_for(client, created["study_id"], checks_acted_on)
    assert study["state"] == "stopped"
    assert study["preflight"]["state"] == "failed"
    assert study["preflight"]["refused"] is True
    overfit = next(c for c in study["preflight"]["checks"] if c["name"] == "overfit_tiny_subset")
    assert overfit["passed"] is False
    assert overfit["figures"]["final_loss"] > overfit["figures"]["target_loss"]
    assert "overfit_tiny_subset" in study["preflight"]["reason"]  # it was null
    assert client.trials(created["study_id"]) == []


def test_passing_checks_with_refuse_on_failure_let_the_trials_start(stack: LocalStack) -> None:
    client = stack.client()
    spec = small_study("preflight-held", preflight={"refuse_on_failure": True})
    created = client.create_study(spec)
    assert created["state"] == "preparing"
    assert client.trials(created["study_id"]) == []
    finished = wait_for(client, created["study_id"], lambda s: s["state"] == "complete")
    assert finished["preflight"]["state"] == "passed"
    assert finished["counts"].get("complete") == 2


def test_checks_can_be_turned_off(stack: LocalStack) -> None:
    client = stack.client()
    created = client.create_study(small_study("preflight-off", preflight={"enabled": False}))
    assert created["preflight"] is None
    assert client.jobs(created["study_id"]) == []


@pytest.mark.parametrize(
    ("preflight", "field"),
    [
        ({"params": {"no_such_parameter": 1}}, "preflight.params.no_such_parameter"),
        ({"params": {"hidden": 0}}, "preflight.params"),
        ({"overfit_samples": 50}, "preflight.overfit_samples"),
        ({"refuse_on_failure": "sometimes"}, "preflight.refuse_on_failure"),
    ],
)
def test_bad_preflight_settings_are_refused_naming_the_field(
    stack: LocalStack, preflight: dict[str, Any], field: str
) -> None:
    client = stack.client()
    spec = small_study("preflight-bad", preflight=preflight)
    with pytest.raises(HPOError) as refused:
        client.create_study(spec)
    assert refused.value.status == 422
    assert field in [problem["field"] for problem in refused.value.body["problems"]]
    assert spec["name"] not in [study["name"] for study in client.studies()]


def test_checks_without_a_trainer_are_refused(stack: LocalStack) -> None:
    client = stack.client()
    spec = small_study("preflight-no-trainer", preflight={"enabled": True})
    del spec["trainer"]
    with pytest.raises(HPOError) as refused:
        client.create_study(spec)
    assert refused.value.status == 422
    assert refused.value.body["problems"][0]["field"] == "preflight.enabled"


@pytest.fixture(params=BACKENDS)
def workerless_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """A stack with no worker yet, whose jobs time out in seconds."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('workerless') / 'hpo.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"workerless_{uuid.uuid4().hex[:10]}"
        )
    settings = {"HPO_DISPATCH_TIMEOUT_S": "2", "HPO_REAPER_INTERVAL_S": "0.5"}
    running = LocalStack(url, workers=0, settings=settings).start()
    yield running
    running.stop()


def test_checks_no_worker_finishes_time_out_and_the_trials_start(
    workerless_stack: LocalStack,
) -> None:
    client = workerless_stack.client()
    spec = small_study("preflight-lost", preflight={"refuse_on_failure": True})
    created = client.create_study(spec)
    study = wait_for(client, created["study_id"], checks_acted_on, timeout_s=60)
    assert study["preflight"]["state"] == "timed_out"
    assert study["state"] == "running"
    # The study turns running, then its slots are filled: the trials are sent, not held for ever.
    assert wait_for_trials(client, created["study_id"])


def test_a_job_the_broker_refuses_says_so_without_the_brokers_address(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('brokerless') / 'hpo.db'}"
    broker = "redis://:broker-secret@127.0.0.1:1/0"  # nothing listens on port 1
    stack = LocalStack(url, workers=0, settings={"HPO_BROKER_URL": broker}).start()
    try:
        client = stack.client()
        created = client.create_study(small_study("preflight-unsent"))
        study = wait_for(client, created["study_id"], checks_finished, timeout_s=60)
        reason = study["preflight"]["reason"]
        assert reason.startswith("could not be sent to the workers: the queue's broker")
        shown = str(client.jobs(created["study_id"]))
        for secret in ("127.0.0.1", "broker-secret", "redis:"):  # ":1" is in any timestamp
            assert secret not in reason and secret not in shown
    finally:
        stack.stop()
