"""A study submitted over HTTP is tuned by a real Celery worker training PyTorch models."""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytest

from cli.local_stack import LocalStack
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EPOCHS = 9


def digits_study(n_trials: int) -> dict[str, Any]:
    """A space with clearly bad corners (tiny learning rates) so that Hyperband has work to do."""
    return {
        "name": unique("digits-e2e"),
        "space": {
            "lr": {"type": "float", "low": 1e-6, "high": 0.1, "log": True},
            "hidden": {"type": "int", "low": 16, "high": 128, "step": 16},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
        "sampler": {"name": "tpe", "seed": 1, "n_startup_trials": 6},
        "pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
        "budget": {"n_trials": n_trials, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "digits", "epochs": EPOCHS},
    }


@pytest.fixture(scope="module")
def finished_study(stack: LocalStack) -> dict[str, Any]:
    client = stack.client()
    created = client.create_study(digits_study(n_trials=14))
    study = wait_for_end(client, created["study_id"], stack)
    return {
        "study": study,
        "trials": client.trials(created["study_id"]),
        "best": client.best(created["study_id"]),
    }


def test_the_study_finishes_exactly_its_budget_of_trials(finished_study: dict[str, Any]) -> None:
    study, trials = finished_study["study"], finished_study["trials"]
    assert study["state"] == "complete"
    assert len(trials) == 14
    assert {t["state"] for t in trials} <= {"complete", "pruned"}, [
        t["fail_reason"] for t in trials
    ]


def test_every_trial_reported_its_epochs(finished_study: dict[str, Any]) -> None:
    for trial in finished_study["trials"]:
        steps = sorted(int(step) for step in trial["intermediate_values"])
        assert steps == list(range(1, len(steps) + 1)), trial
        if trial["state"] == "complete":
            assert steps[-1] == EPOCHS


def test_hyperband_prunes_some_trial_before_its_last_epoch(finished_study: dict[str, Any]) -> None:
    pruned = [t for t in finished_study["trials"] if t["state"] == "pruned"]
    assert pruned, "no trial was pruned"
    assert min(t["last_step"] for t in pruned) < EPOCHS


def test_best_is_inside_the_space_and_equals_the_best_trial(finished_study: dict[str, Any]) -> None:
    best, trials = finished_study["best"], finished_study["trials"]
    complete = [t for t in trials if t["state"] == "complete"]
    best_trial = min(complete, key=lambda t: t["value"])
    assert best["value"] == best_trial["value"] and best["number"] == best_trial["number"]
    params = best["params"]
    assert 1e-6 <= params["lr"] <= 0.1
    assert params["hidden"] in range(16, 129, 16)
    assert params["optimizer"] in ("sgd", "adam")
    assert best["value"] < math.log(10), "the best trial learned nothing"


def test_optuna_reads_the_same_study_from_the_database(
    stack: LocalStack, finished_study: dict[str, Any]
) -> None:
    study = finished_study["study"]
    loaded = optuna.load_study(study_name=study["name"], storage=stack.database_url)
    assert len(loaded.trials) == len(finished_study["trials"])
    assert loaded.best_trial.number == finished_study["best"]["number"]
    assert loaded.best_value == finished_study["best"]["value"]
    assert loaded.best_params == finished_study["best"]["params"]
    assert loaded.metric_names == ["validation_loss"]


def test_a_trainer_error_fails_the_trial_with_its_reason_and_the_study_goes_on(
    stack: LocalStack,
) -> None:
    client = stack.client()
    study = {
        "name": unique("diverges"),
        "space": {"lr": {"type": "float", "low": 1e5, "high": 1e6, "log": True}},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 3, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 3, "device": "cpu"},
        # no momentum, plain SGD: a learning rate this size makes the loss infinite at once
    }
    study["space"]["optimizer"] = {"type": "categorical", "choices": ["sgd"]}
    created = client.create_study(study)
    finished = wait_for_end(client, created["study_id"], stack)
    trials = client.trials(created["study_id"])
    assert finished["state"] == "complete" and len(trials) == 3
    assert all(t["state"] == "fail" for t in trials)
    assert all("diverged" in (t["fail_reason"] or "") for t in trials), [
        t["fail_reason"] for t in trials
    ]
