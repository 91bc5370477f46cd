"""The test split stays in the vault until asked for, and is scored once per model."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from cli.local_stack import LocalStack
from client import HPOError, HPOJSONClient
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DIGITS_TEST_ROWS = 360  # 20 % of 1797, stratified


def finished_study(client: HPOJSONClient, n_trials: int) -> int:
    """A small digits study run to completion; its id."""
    created = client.create_study(
        {
            "name": unique("vault"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
            "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": "none"},
            "budget": {"n_trials": n_trials, "max_concurrent_trials": 2},
            "trainer": {"name": "mlp", "dataset": "digits", "epochs": 3},
        }
    )
    wait_for_end(client, created["study_id"], timeout_s=180, poll_s=0.3)
    return int(created["study_id"])


def wait_for_job(client: HPOJSONClient, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.job(job_id)
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish")


def vault_figures_in(document: Any) -> list[Any]:
    """Every figure of the test split in a JSON document: a ``test`` object of figures (a
    ``test`` count, the split's size, is no figure), or a ``test_*`` figure (but the split's
    ``test_fraction``)."""
    found: list[Any] = []
    if isinstance(document, dict):
        for key, value in document.items():
            if (key == "test" and isinstance(value, dict)) or (
                key.startswith("test_") and key != "test_fraction"
            ):
                found.append({key: value})
            found += vault_figures_in(value)
    elif isinstance(document, list):
        found = [figure for value in document for figure in vault_figures_in(value)]
    return found


@pytest.fixture(scope="module")
def study_id(stack: LocalStack) -> int:
    return finished_study(stack.client(), n_trials=4)


def test_no_test_figure_shows_before_the_vault_is_opened(stack: LocalStack, study_id: int) -> None:
    client = stack.client()
    seen = [
        client.study(study_id),
        client.trials(study_id),
        client.best(study_id),
        client.jobs(study_id),
        client.studies(),
    ]
    assert vault_figures_in(seen) == []
    assert all(job["kind"] != "evaluate" for job in client.jobs(study_id))


def test_the_vault_opens_once_per_model(stack: LocalStack, study_id: int) -> None:
    client = stack.client()
    best = client.best(study_id)
    first = client.evaluate(study_id)
    assert first["trial_ids"] == [best["trial_id"]]
    assert first["vault_opened"] == 1
    scored = wait_for_job(client, first["job_id"])
    assert scored["state"] == "done", scored["reason"]
    assert vault_figures_in(scored) == [{"test": scored["result"]["test"]}]  # the check can see
    test = scored["result"]["test"]
    assert math.isfinite(test["loss"]) and 0 < test["loss"] < 5
    assert 0 <= test["accuracy"] <= 1
    assert test["samples"] == DIGITS_TEST_ROWS
    assert f"{test['loss']}" not in stack.logs()  # no log line carries the test figure

    again = client.evaluate(study_id, trial_id=best["trial_id"])
    assert again["job_id"] == first["job_id"]
    assert again["vault_opened"] == 1  # not re-scored, not counted again
    assert again["result"] == scored["result"]

    other = next(t for t in client.trials(study_id) if t["trial_id"] != best["trial_id"])
    second = client.evaluate(study_id, trial_id=other["trial_id"])
    assert second["vault_opened"] == 2
    assert wait_for_job(client, second["job_id"])["state"] == "done"

    ensemble = client.evaluate(study_id, ensemble_k=3)
    assert len(ensemble["trial_ids"]) == 3 and ensemble["vault_opened"] == 3
    assert wait_for_job(client, ensemble["job_id"])["result"]["test"]["samples"] == (
        DIGITS_TEST_ROWS
    )
    assert client.evaluate(study_id)["vault_opened"] == 3


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"trial_id": 10**9}, "trial_id", 422),
        ({"ensemble_k": 1}, "ensemble_k", 422),
        ({"ensemble_k": 50}, "ensemble_k", 422),
        ({"ensemble_k": 3, "trial_id": 1}, "ensemble_k", 422),
        ({"model": "best"}, "model", 422),
    ],
)
def test_bad_evaluation_requests_are_refused_and_open_nothing(
    stack: LocalStack, study_id: int, body: dict[str, Any], field: str, status: int
) -> None:
    client = stack.client()
    before = len([job for job in client.jobs(study_id) if job["kind"] == "evaluate"])
    with pytest.raises(HPOError) as refused:
        client._call("POST", f"/studies/{study_id}/evaluate", json=body)
    assert refused.value.status == status
    assert field in [problem["field"] for problem in refused.value.body["problems"]]
    after = len([job for job in client.jobs(study_id) if job["kind"] == "evaluate"])
    assert after == before


def test_a_study_without_a_complete_trial_has_nothing_to_evaluate(stack: LocalStack) -> None:
    client = stack.client()
    created = client.create_study(
        {"name": unique("vault-empty"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    )
    with pytest.raises(HPOError) as refused:
        client.evaluate(created["study_id"])
    assert refused.value.status == 409
    assert client.jobs(created["study_id"]) == []


def test_a_study_without_a_trainer_has_no_model_to_evaluate(stack: LocalStack) -> None:
    client = stack.client()
    created = client.create_study(
        {"name": unique("vault-external"), "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    )
    trial = client.ask(created["study_id"])
    client.complete(trial["trial_id"], value=0.5, lease=trial["lease"])
    with pytest.raises(HPOError) as refused:
        client.evaluate(created["study_id"])
    assert refused.value.status == 409
    assert "no trainer" in refused.value.body["error"]
    assert client.jobs(created["study_id"]) == []


def test_a_study_of_several_objectives_scores_a_named_trial_but_has_no_best(
    stack: LocalStack,
) -> None:
    client = stack.client()
    created = client.create_study(
        {
            "name": unique("vault-pareto"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
            "objectives": [
                {"metric": "validation_loss", "direction": "minimize"},
                {"metric": "n_parameters", "direction": "minimize"},
            ],
            "sampler": {"name": "random", "seed": 0},
            "budget": {"n_trials": 2, "max_concurrent_trials": 2},
            "trainer": {"name": "mlp", "dataset": "digits", "epochs": 2},
        }
    )
    study_id = created["study_id"]
    wait_for_end(client, study_id, timeout_s=180, poll_s=0.3)
    with pytest.raises(HPOError) as refused:
        client.evaluate(study_id)
    assert refused.value.status == 409 and "trial_id" in refused.value.body["error"]
    front = client._call("GET", f"/studies/{study_id}/pareto")["trials"]
    job = client.evaluate(study_id, trial_id=front[0]["trial_id"])
    scored = wait_for_job(client, job["job_id"])
    assert scored["state"] == "done", scored["reason"]
    assert scored["result"]["test"]["samples"] == DIGITS_TEST_ROWS


def test_a_job_that_fails_says_why_without_the_worker_s_traceback(
    stack: LocalStack, study_id: int
) -> None:
    """A trial copied by a warm start has no checkpoint of its own to score: the job fails with
    the error's type and message; the traceback (the worker's code and paths) stays in its log."""
    client = stack.client()
    warm = client.create_study(
        {
            "name": unique("vault-warm"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}},
            "sampler": {"name": "random", "seed": 1},
            "pruner": {"name": "none"},
            "budget": {"n_trials": 1},
            "trainer": {"name": "mlp", "dataset": "digits", "epochs": 1},
            "preflight": {"enabled": False},
            "warm_start": {"study_id": study_id},
        }
    )
    copied = next(t for t in client.trials(warm["study_id"]) if t["state"] == "complete")
    job = wait_for_job(
        client, client.evaluate(warm["study_id"], trial_id=copied["trial_id"])["job_id"]
    )
    assert job["state"] == "failed"
    assert "Traceback" not in job["reason"] and 'File "' not in job["reason"], job["reason"]
    assert job["reason"].split(":")[0].isidentifier()  # the error's type, then its message
