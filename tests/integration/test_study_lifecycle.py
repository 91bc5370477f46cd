"""A study's life past submit: pause and resume, delete, a target value, known configurations first."""

from __future__ import annotations

import time
from typing import Any

import optuna
import pytest
import requests

from cli.local_stack import LocalStack
from client import HPOJSONClient
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration
SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}


def external_study(client: HPOJSONClient, **fields: Any) -> dict[str, Any]:
    return client.create_study(
        {"name": unique("life"), "space": SPACE, "pruner": {"name": "none"}, **fields}
    )


def finish(client: HPOJSONClient, trial: dict[str, Any], value: float) -> None:
    client.complete(trial["trial_id"], value=value, lease=trial["lease"])


def test_a_paused_study_starts_nothing_until_resumed(stack: LocalStack) -> None:
    client = stack.client()
    study = external_study(client, budget={"n_trials": 3, "max_concurrent_trials": 3})
    running = client.ask(study["study_id"])
    assert client.pause(study["study_id"])["state"] == "paused"
    refused = requests.post(f"{stack.url}/studies/{study['study_id']}/trials", timeout=10)
    assert refused.status_code == 409 and "paused" in refused.json()["error"]
    finish(client, running, 0.5)  # a running trial finishes while paused
    assert client.study(study["study_id"])["state"] == "paused"
    assert client.resume(study["study_id"])["state"] == "running"
    finish(client, client.ask(study["study_id"]), 0.4)
    assert client.study(study["study_id"])["counts"]["complete"] == 2


@pytest.mark.slow
def test_pausing_a_trained_study_holds_the_workers_back(stack: LocalStack) -> None:
    client = stack.client()
    spec = {
        "name": unique("pause-trained"),
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 4, "max_concurrent_trials": 1},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3},
    }
    study_id = client.create_study(spec)["study_id"]
    client.pause(study_id)
    deadline = time.monotonic() + 120
    # The trial already sent finishes where a worker had claimed it; not claimed yet, it does not
    # start (a fresh trial takes its place on resume, outside the budget).
    while client.study(study_id)["counts"]["running"]:
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.5)
    time.sleep(2)  # and nothing follows it
    paused = client.study(study_id)
    assert paused["state"] == "paused"
    counts = paused["counts"]
    assert counts["running"] == 0 and counts["complete"] + counts["retried"] == 1, counts
    client.resume(study_id)
    deadline = time.monotonic() + 120
    while client.study(study_id)["state"] == "running":
        assert time.monotonic() < deadline, stack.logs()
        time.sleep(0.5)
    assert client.study(study_id)["counts"]["complete"] == 4


def test_a_deleted_study_and_its_trials_are_gone(stack: LocalStack) -> None:
    client = stack.client()
    study = external_study(client)
    trial = client.ask(study["study_id"])
    deleted = requests.delete(f"{stack.url}/studies/{study['study_id']}", timeout=10)
    assert deleted.status_code == 204 and deleted.content == b""
    assert "Content-Type" not in deleted.headers  # no body to type (it said text/html)
    assert requests.get(f"{stack.url}/studies/{study['study_id']}", timeout=10).status_code == 404
    report = requests.post(
        f"{stack.url}/trials/{trial['trial_id']}/report", json={"step": 1, "value": 0.1}, timeout=10
    )
    assert report.status_code == 404
    with pytest.raises(KeyError):
        optuna.load_study(study_name=study["name"], storage=stack.database_url)
    assert study["study_id"] not in {s["study_id"] for s in client.studies()}


def test_reaching_the_target_value_ends_the_study(stack: LocalStack) -> None:
    client = stack.client()
    study = external_study(
        client, budget={"n_trials": 50, "target_value": 0.1, "max_concurrent_trials": 1}
    )
    finish(client, client.ask(study["study_id"]), 0.3)
    assert client.study(study["study_id"])["state"] == "running"
    finish(client, client.ask(study["study_id"]), 0.05)
    ended = client.study(study["study_id"])
    assert ended["state"] == "complete" and ended["counts"]["complete"] == 2
    assert (
        requests.post(f"{stack.url}/studies/{study['study_id']}/trials", timeout=10).status_code
        == 409
    )


def test_enqueued_configurations_run_first(stack: LocalStack) -> None:
    client = stack.client()
    known = [{"x": 0.25}, {"x": 0.75}]
    study = external_study(
        client, enqueue=known, budget={"n_trials": 3, "max_concurrent_trials": 3}
    )
    asked = [client.ask(study["study_id"])["params"] for _ in range(3)]
    assert asked[:2] == known
    assert 0.0 <= asked[2]["x"] <= 1.0
    assert client.study(study["study_id"])["counts"]["running"] == 3


@pytest.mark.parametrize(
    ("enqueue", "field"), [([{"x": 7.0}], "enqueue.0.x"), ([{"x": 0.5}, {"y": 1}], "enqueue.1.y")]
)
def test_an_enqueued_configuration_outside_the_space_gets_422(
    stack: LocalStack, enqueue: list[dict[str, Any]], field: str
) -> None:
    body = {"name": unique("bad-enqueue"), "space": SPACE, "enqueue": enqueue}
    response = requests.post(f"{stack.url}/studies", json=body, timeout=10)
    assert response.status_code == 422
    assert response.json()["problems"][0]["field"] == field


def test_a_stopped_study_cannot_be_paused_or_resumed(stack: LocalStack) -> None:
    client = stack.client()
    study = external_study(client)
    client.stop(study["study_id"])
    for action in ("pause", "resume"):
        response = requests.post(f"{stack.url}/studies/{study['study_id']}/{action}", timeout=10)
        assert response.status_code == 409


def test_extending_the_budget_runs_a_completed_study_again(stack: LocalStack) -> None:
    client = stack.client()
    study = external_study(client, budget={"n_trials": 1, "max_concurrent_trials": 2})
    finish(client, client.ask(study["study_id"]), 0.5)
    assert client.study(study["study_id"])["state"] == "complete"
    extend = requests.post(
        f"{stack.url}/studies/{study['study_id']}/budget", json={"n_trials": 3}, timeout=10
    )
    assert extend.status_code == 200
    assert extend.json()["state"] == "running" and extend.json()["n_trials"] == 3
    for value in (0.4, 0.3):
        finish(client, client.ask(study["study_id"]), value)
    final = client.study(study["study_id"])
    assert final["state"] == "complete" and final["counts"]["complete"] == 3
    assert (
        requests.post(f"{stack.url}/studies/{study['study_id']}/trials", timeout=10).status_code
        == 409
    )


@pytest.mark.parametrize(
    ("n_trials", "status", "field"), [(2, 422, "n_trials"), (0, 422, "n_trials")]
)
def test_an_extension_must_raise_the_budget(
    stack: LocalStack, n_trials: int, status: int, field: str
) -> None:
    study = external_study(stack.client(), budget={"n_trials": 2})
    response = requests.post(
        f"{stack.url}/studies/{study['study_id']}/budget", json={"n_trials": n_trials}, timeout=10
    )
    assert response.status_code == status
    assert response.json()["problems"][0]["field"] == field


def test_a_stopped_study_cannot_be_extended(stack: LocalStack) -> None:
    client = stack.client()
    study = external_study(client)
    client.stop(study["study_id"])
    response = requests.post(
        f"{stack.url}/studies/{study['study_id']}/budget", json={"n_trials": 50}, timeout=10
    )
    assert response.status_code == 409
