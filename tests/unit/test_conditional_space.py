"""Conditional parameters: checked when a study is submitted, and suggested define-by-run
(a child only when its parent took one of its values)."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from service.errors import InvalidSpec
from service.policies import build_sampler
from service.spec.conditional import active_names, order_of, suggest
from service.spec.study_spec import StudySpec
from service.spec.validation import check_study_spec
from service.trainer_catalog import TrainerCatalog
from service.warm_start import why_not_copied

CATALOG = TrainerCatalog(frozenset({"mlp"}))
MOMENTUM_OWNERS = ["sgd_momentum", "nesterov"]


def optimizer_space() -> dict[str, Any]:
    return {
        "beta1": {
            "type": "float",
            "low": 0.8,
            "high": 0.99,
            "condition": {"param": "optimizer", "in": ["adam", "adamw"]},
        },
        "optimizer": {
            "type": "categorical",
            "choices": ["sgd", "sgd_momentum", "nesterov", "adam", "adamw"],
        },
        "momentum": {
            "type": "float",
            "low": 0.5,
            "high": 0.99,
            "condition": {"param": "optimizer", "in": MOMENTUM_OWNERS},
        },
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
    }


def make(space: dict[str, Any], **fields: Any) -> StudySpec:
    body = {"name": "c", "space": space, "trainer": {"name": "mlp"}, **fields}
    return StudySpec.model_validate(body)


def refusal(space: dict[str, Any], **fields: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as refused:
        check_study_spec(make(space, **fields), CATALOG)
    return refused.value


def test_a_condition_keeps_its_in_key_through_a_round_trip() -> None:
    spec = make(optimizer_space())
    dumped = spec.model_dump(mode="json")
    assert dumped["space"]["momentum"]["condition"] == {
        "param": "optimizer",
        "in": MOMENTUM_OWNERS,
    }
    assert StudySpec.model_validate(dumped) == spec


def test_a_valid_conditional_space_is_accepted_and_ordered_parents_first() -> None:
    spec = check_study_spec(make(optimizer_space()), CATALOG)
    order = order_of(spec.space)
    assert order.index("optimizer") < order.index("beta1")
    assert order.index("optimizer") < order.index("momentum")


def test_a_condition_on_a_missing_parent_names_the_field() -> None:
    space = optimizer_space()
    space["momentum"]["condition"]["param"] = "optimiser"
    error = refusal(space)
    assert error.field == "space.momentum.condition.param"
    assert "optimiser" in str(error)


def test_a_condition_on_a_non_categorical_parent_is_refused() -> None:
    space = optimizer_space()
    space["momentum"]["condition"] = {"param": "lr", "in": [0.1]}
    error = refusal(space)
    assert error.field == "space.momentum.condition.param" and "categorical" in str(error)


def test_condition_values_must_be_among_the_parent_choices() -> None:
    space = optimizer_space()
    space["momentum"]["condition"]["in"] = ["sgd_momentum", "rmsprop"]
    error = refusal(space)
    assert error.field == "space.momentum.condition.in" and "rmsprop" in str(error)


def test_conditions_forming_a_cycle_are_refused() -> None:
    space = {
        "optimizer": {
            "type": "categorical",
            "choices": ["sgd", "adam"],
            "condition": {"param": "schedule", "in": ["step"]},
        },
        "schedule": {
            "type": "categorical",
            "choices": ["constant", "step"],
            "condition": {"param": "optimizer", "in": ["adam"]},
        },
    }
    error = refusal(space)
    assert error.field == "space" and "cycle" in str(error)


def test_grid_and_cmaes_samplers_refuse_conditional_spaces() -> None:
    space = optimizer_space()
    del space["lr"], space["beta1"]["low"], space["beta1"]["high"]
    space["beta1"] = {
        "type": "categorical",
        "choices": [0.9],
        "condition": space["beta1"]["condition"],
    }
    space["momentum"] = {
        "type": "float",
        "low": 0.5,
        "high": 0.9,
        "step": 0.1,
        "condition": space["momentum"]["condition"],
    }
    assert refusal(space, sampler={"name": "grid"}).field == "sampler.name"


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_children_are_suggested_only_when_their_condition_holds(sampler: str) -> None:
    spec = check_study_spec(make(optimizer_space(), sampler={"name": sampler, "seed": 1}), CATALOG)
    study = optuna.create_study(sampler=build_sampler(spec, 0))
    seen = set()
    for _ in range(30):
        trial = suggest(study, spec.space)
        chosen = trial.params["optimizer"]
        seen.add(chosen)
        assert ("momentum" in trial.params) == (chosen in MOMENTUM_OWNERS)
        assert ("beta1" in trial.params) == (chosen in ("adam", "adamw"))
        assert "lr" in trial.params
        study.tell(trial, trial.params["lr"])
    assert len(seen) >= 3  # several branches were taken


def test_an_enqueued_configuration_is_run_as_given() -> None:
    spec = check_study_spec(make(optimizer_space()), CATALOG)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"optimizer": "nesterov", "momentum": 0.95, "lr": 0.01})
    trial = suggest(study, spec.space)
    assert trial.params == {"optimizer": "nesterov", "momentum": 0.95, "lr": 0.01}


def test_an_enqueued_child_whose_parent_is_set_otherwise_is_refused() -> None:
    refused = refusal(optimizer_space(), enqueue=[{"optimizer": "sgd", "momentum": 0.9}])
    assert refused.field == "enqueue.0.momentum"
    assert "exists only where 'optimizer'" in refused.message
    # Its parent left out (to be sampled) was taken, and the sampled parent could drop it.
    left_out = refusal(optimizer_space(), enqueue=[{"lr": 0.01}, {"momentum": 0.9}])
    assert left_out.field == "enqueue.1.momentum"
    assert "set 'optimizer' too" in left_out.message
    point = {"optimizer": "nesterov", "momentum": 0.9}  # its parent set to one of its values
    assert check_study_spec(make(optimizer_space(), enqueue=[point]), CATALOG).enqueue


def test_active_names_follow_each_condition_down_the_tree() -> None:
    space = make(optimizer_space()).space
    assert set(active_names(space, {"optimizer": "adam"})) == {"optimizer", "lr", "beta1"}
    assert set(active_names(space, {"optimizer": "sgd"})) == {"optimizer", "lr"}
    assert set(active_names(space, {})) == {"optimizer", "lr"}


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "nesterov"])
def test_warm_start_copies_a_trial_of_the_same_conditional_space(optimizer: str) -> None:
    spec = check_study_spec(make(optimizer_space()), CATALOG)
    source = optuna.create_study()
    source.enqueue_trial({"optimizer": optimizer, "lr": 0.01, "beta1": 0.9, "momentum": 0.9})
    trial = suggest(source, spec.space)
    source.tell(trial, 0.5)
    assert why_not_copied(spec, source.trials[0]) is None


def test_warm_start_skips_a_trial_that_set_a_child_its_condition_excludes() -> None:
    spec = check_study_spec(make(optimizer_space()), CATALOG)
    distributions = {name: param.distribution() for name, param in spec.space.items()}
    params = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
    trial = optuna.trial.create_trial(
        params=params, distributions={n: distributions[n] for n in params}, value=0.5
    )
    assert "condition" in (why_not_copied(spec, trial) or "")
