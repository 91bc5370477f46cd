"""One study definition with a seed, run one trial at a time, gives the same trials and best."""

from __future__ import annotations

from typing import Any

import pytest

from cli.local_stack import LocalStack
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def definition() -> dict[str, Any]:
    return {
        "name": unique("repro"),
        "space": {
            "lr": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
            "hidden": {"type": "int", "low": 16, "high": 128, "step": 16},
        },
        "sampler": {"name": "tpe", "seed": 11, "n_startup_trials": 3},
        "pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
        "budget": {"n_trials": 8, "max_concurrent_trials": 1},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": 9, "device": "cpu", "seed": 5},
    }


def run(stack: LocalStack) -> tuple[list[tuple[Any, ...]], dict[str, Any]]:
    client = stack.client()
    study_id = client.create_study(definition())["study_id"]
    wait_for_end(client, study_id, stack)
    trials = [
        (t["number"], t["params"], t["state"], t["value"], t["seed"], t["intermediate_values"])
        for t in client.trials(study_id)
    ]
    return trials, client.best(study_id)


def test_the_same_definition_gives_the_same_trials_and_best(stack: LocalStack) -> None:
    first_trials, first_best = run(stack)
    second_trials, second_best = run(stack)
    assert len(first_trials) == 8
    assert first_trials == second_trials
    assert (first_best["params"], first_best["value"]) == (
        second_best["params"],
        second_best["value"],
    )
    assert len({str(params) for _, params, *_ in first_trials}) == 8
