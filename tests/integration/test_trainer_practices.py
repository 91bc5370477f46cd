"""The training practices over the real stack: a study searches the optimizer with conditional
sub-parameters and a schedule; trials keep their per-epoch records; a diverging trial fails with
its reason while the study completes; bad conditions and bad records get a 422 naming the field."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cli.local_stack import LocalStack
from client import HPOError
from tests.integration.conftest import unique
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EPOCHS = 3
MOMENTUM_OWNERS = ["sgd_momentum", "nesterov"]
ADAM_FAMILY = ["adam", "adamw"]
DIVERGING = {"optimizer": "sgd", "lr": 1e6, "schedule": "constant"}


def practices_study() -> dict[str, Any]:
    return {
        "name": unique("practices"),
        "space": {
            "optimizer": {
                "type": "categorical",
                "choices": ["sgd", "sgd_momentum", "nesterov", "rmsprop", "adam", "adamw"],
            },
            "momentum": {
                "type": "float",
                "low": 0.5,
                "high": 0.95,
                "condition": {"param": "optimizer", "in": MOMENTUM_OWNERS},
            },
            "beta1": {
                "type": "float",
                "low": 0.8,
                "high": 0.95,
                "condition": {"param": "optimizer", "in": ADAM_FAMILY},
            },
            "lr": {"type": "float", "low": 1e-3, "high": 1e6, "log": True},
            "schedule": {"type": "categorical", "choices": ["constant", "step", "cosine"]},
        },
        "enqueue": [
            {"optimizer": "nesterov", "momentum": 0.9, "lr": 0.05, "schedule": "step"},
            {"optimizer": "adamw", "beta1": 0.85, "lr": 0.01, "schedule": "cosine"},
            DIVERGING,
        ],
        "sampler": {"name": "random", "seed": 5},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 5, "max_concurrent_trials": 2},
        "trainer": {
            "name": "mlp",
            "dataset": "digits",
            "epochs": EPOCHS,
            "params": {"hidden": 32, "step_size": 1, "step_gamma": 0.5},
        },
    }


@pytest.fixture(scope="module")
def finished(stack: LocalStack) -> dict[str, Any]:
    client = stack.client()
    created = client.create_study(practices_study())
    study = wait_for_end(client, created["study_id"], stack)
    return {"study": study, "trials": client.trials(created["study_id"])}


def test_the_study_completes_its_budget(finished: dict[str, Any]) -> None:
    assert finished["study"]["state"] == "complete"
    assert len(finished["trials"]) == 5


def test_children_exist_only_where_their_condition_holds(finished: dict[str, Any]) -> None:
    for trial in finished["trials"]:
        params = trial["params"]
        assert ("momentum" in params) == (params["optimizer"] in MOMENTUM_OWNERS), params
        assert ("beta1" in params) == (params["optimizer"] in ADAM_FAMILY), params


def test_the_diverging_trial_fails_with_its_reason(finished: dict[str, Any]) -> None:
    diverging = [t for t in finished["trials"] if t["params"] == DIVERGING]
    assert len(diverging) == 1
    assert diverging[0]["state"] == "fail"
    # NaN or past the default bound max_loss=1e4, whichever the first epoch reaches first
    reason = r"^training loss diverged (past the bound max_loss=10000 )?at epoch 1 \("
    assert re.match(reason, diverging[0]["fail_reason"]), diverging[0]["fail_reason"]


def test_complete_trials_keep_their_per_epoch_records(finished: dict[str, Any]) -> None:
    complete = [t for t in finished["trials"] if t["state"] == "complete"]
    assert len(complete) >= 2  # the two enqueued sound configurations
    for trial in complete:
        records = trial["epoch_metrics"]
        assert [r["epoch"] for r in records] == [1, 2, 3]
        for record in records:
            assert {"train_loss", "validation_loss", "grad_norm", "update_ratio"} <= set(record)
            assert {"dead_relu_fraction", "validation_accuracy", "validation_macro_f1"} <= set(
                record
            )
        losses = [r["validation_loss"] for r in records]
        assert trial["value"] == pytest.approx(min(losses))
    stepped = next(t for t in complete if t["params"].get("schedule") == "step")
    assert [r["lr"] for r in stepped["epoch_metrics"]] == pytest.approx([0.05, 0.025, 0.0125])


def test_the_best_trial_carries_a_fitting_diagnosis(finished: dict[str, Any]) -> None:
    diagnosis = finished["study"]["best"]["diagnosis"]
    assert diagnosis["verdict"] in ("overfitting", "underfitting", "ok")
    assert diagnosis["trial_id"] == finished["study"]["best"]["trial_id"]


def test_a_condition_on_a_missing_parent_is_refused_naming_the_field(stack: LocalStack) -> None:
    body = practices_study()
    body["space"]["momentum"]["condition"]["param"] = "optimiser"
    with pytest.raises(HPOError) as refused:
        stack.client().create_study(body)
    assert refused.value.status == 422
    assert refused.value.body["problems"][0]["field"] == "space.momentum.condition.param"


def test_bad_epoch_records_are_refused_naming_the_field_and_change_nothing(
    stack: LocalStack,
) -> None:
    client = stack.client()
    created = client.create_study(
        {"name": unique("records"), "space": {"lr": {"type": "float", "low": 0.1, "high": 1.0}}}
    )
    trial = client.ask(created["study_id"])
    with pytest.raises(HPOError) as refused:
        client.complete(
            trial["trial_id"],
            value=0.5,
            lease=trial["lease"],
            epoch_metrics=[{"train_loss": 1.0}, {"train_loss": "high"}],  # type: ignore[list-item]
        )
    assert refused.value.status == 422
    assert refused.value.body["problems"][0]["field"].startswith("epoch_metrics.1")
    assert client.trials(created["study_id"])[0]["state"] == "running"
    records = [{"epoch": 1.0, "train_loss": 1.0, "validation_loss": 0.9}]
    done = client.complete(
        trial["trial_id"], value=0.9, lease=trial["lease"], epoch_metrics=records
    )
    assert done["state"] == "complete" and done["epoch_metrics"] == records
