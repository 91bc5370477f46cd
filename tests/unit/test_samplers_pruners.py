"""The samplers and pruners past the first release: options, rejections, and QMC across asks."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from pydantic import ValidationError

from service.errors import InvalidSpec
from service.policies import SpaceQMCSampler, build_pruner, build_sampler
from service.spec import validation
from service.spec.problems import problems_from_validation_error
from service.spec.study_spec import StudySpec
from service.spec.validation import check_study_spec
from service.tpe_split import SplitOnceTPESampler
from service.trainer_catalog import TrainerCatalog

CATALOG = TrainerCatalog(frozenset({"mlp", "my-trainer"}))
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "n": {"type": "int", "low": 1, "high": 64, "log": True},
}


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "space": SPACE, **fields}


def spec(**fields: Any) -> StudySpec:
    return StudySpec.model_validate(body(**fields))


SAMPLERS: list[tuple[dict[str, Any], type, dict[str, Any]]] = [
    # (sampler spec, Optuna class, private attributes that hold the options)
    (
        {"name": "tpe", "constant_liar": False, "group": True, "n_startup_trials": 3},
        SplitOnceTPESampler,
        {"_constant_liar": False, "_group": True, "_n_startup_trials": 3},
    ),
    ({"name": "tpe"}, SplitOnceTPESampler, {"_constant_liar": True, "_group": False}),
    (
        {"name": "cmaes", "seed": 1, "n_startup_trials": 4},
        optuna.samplers.CmaEsSampler,
        {"_n_startup_trials": 4},
    ),
    (
        {"name": "qmc", "seed": 9, "qmc_type": "halton", "scramble": True},
        SpaceQMCSampler,
        {"_qmc_type": "halton", "_scramble": True, "_seed": 9},
    ),
    ({"name": "qmc"}, SpaceQMCSampler, {"_qmc_type": "sobol", "_scramble": False}),
    ({"name": "gp", "n_startup_trials": 7}, optuna.samplers.GPSampler, {"_n_startup_trials": 7}),
]


@pytest.mark.parametrize(("sampler", "kind", "options"), SAMPLERS)
def test_each_sampler_builds_with_its_options(
    sampler: dict[str, Any], kind: type, options: dict[str, Any]
) -> None:
    built = build_sampler(spec(sampler=sampler), 3)
    assert type(built) is kind
    assert {name: getattr(built, name) for name in options} == options


PRUNERS: list[tuple[dict[str, Any], type, dict[str, Any]]] = [
    (
        {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 3, "interval_steps": 2},
        optuna.pruners.MedianPruner,
        {"_percentile": 50.0, "_n_startup_trials": 2, "_n_warmup_steps": 3, "_interval_steps": 2},
    ),
    (
        {"name": "percentile", "percentile": 25, "n_min_trials": 3},
        optuna.pruners.PercentilePruner,
        {"_percentile": 25.0, "_n_min_trials": 3, "_n_startup_trials": 5},
    ),
    (
        {"name": "successive_halving", "min_resource": 2, "min_early_stopping_rate": 1},
        optuna.pruners.SuccessiveHalvingPruner,
        {"_min_resource": 2, "_reduction_factor": 4, "_min_early_stopping_rate": 1},
    ),
    (
        {"name": "threshold", "upper": 1.5, "n_warmup_steps": 2},
        optuna.pruners.ThresholdPruner,
        {"_lower": float("-inf"), "_upper": 1.5, "_n_warmup_steps": 2, "_interval_steps": 1},
    ),
    (
        {"name": "patient", "patience": 2, "min_delta": 0.1},
        optuna.pruners.PatientPruner,
        {"_patience": 2, "_min_delta": 0.1, "_wrapped_pruner": None},
    ),
    (
        {"name": "wilcoxon", "p_threshold": 0.05},
        optuna.pruners.WilcoxonPruner,
        {"_p_threshold": 0.05, "_n_startup_steps": 2},
    ),
]


@pytest.mark.parametrize(("pruner", "kind", "options"), PRUNERS)
def test_each_pruner_builds_with_its_options(
    pruner: dict[str, Any], kind: type, options: dict[str, Any]
) -> None:
    built = build_pruner(spec(pruner=pruner))
    assert type(built) is kind
    assert {name: getattr(built, name) for name in options} == options


def test_patient_builds_the_pruner_it_wraps() -> None:
    wrapped = {"name": "threshold", "lower": -1.0}
    built = build_pruner(spec(pruner={"name": "patient", "patience": 1, "wrapped": wrapped}))
    assert isinstance(built._wrapped_pruner, optuna.pruners.ThresholdPruner)
    assert built._wrapped_pruner._lower == -1.0


BAD_OPTIONS: list[tuple[dict[str, Any], str, str]] = [
    # (study fields, field named, words of the problem)
    ({"sampler": {"name": "tpe", "multivariate": False, "group": True}}, "sampler.group", "multi"),
    ({"sampler": {"name": "qmc", "qmc_type": "latin"}}, "sampler.qmc_type", "sobol"),
    ({"sampler": {"name": "cmaes", "restart_strategy": "ipop"}}, "sampler.restart_strategy", ""),
    ({"sampler": {"name": "gp", "n_startup_trials": -1}}, "sampler.n_startup_trials", "0"),
    ({"pruner": {"name": "threshold"}}, "pruner.upper", "lower, upper or both"),
    ({"pruner": {"name": "threshold", "lower": 2, "upper": 1}}, "pruner.upper", "below lower"),
    ({"pruner": {"name": "patient", "patience": -1}}, "pruner.patience", "greater than"),
    ({"pruner": {"name": "patient", "patience": 1, "min_delta": -0.5}}, "pruner.min_delta", "0"),
    (
        {"pruner": {"name": "patient", "patience": 1, "wrapped": {"name": "patient"}}},
        "pruner.wrapped",
        "median",
    ),
    (
        {"pruner": {"name": "patient", "patience": 1, "wrapped": {"name": "threshold"}}},
        "pruner.wrapped.upper",
        "lower, upper",
    ),
    (
        {"pruner": {"name": "successive_halving", "reduction_factor": 1}},
        "pruner.reduction_factor",
        "2",
    ),
    ({"pruner": {"name": "wilcoxon", "p_threshold": 1.5}}, "pruner.p_threshold", "1"),
    ({"pruner": {"name": "median", "interval_steps": 0}}, "pruner.interval_steps", "1"),
]


@pytest.mark.parametrize(("fields", "field", "words"), BAD_OPTIONS)
def test_bad_options_are_rejected_with_the_field_named(
    fields: dict[str, Any], field: str, words: str
) -> None:
    data = body(**fields)
    with pytest.raises(ValidationError) as raised:
        StudySpec.model_validate(data)
    problems = problems_from_validation_error(raised.value, data)
    assert any(p["field"] == field and words in p["problem"] for p in problems), problems


@pytest.mark.parametrize("percentile", [None, 101])
def test_a_bad_percentile_names_the_percentile_field(percentile: float | None) -> None:
    pruner = (
        {"name": "percentile"}
        if percentile is None
        else {"name": "percentile", "percentile": percentile}
    )
    data = body(pruner=pruner)
    with pytest.raises(ValidationError) as raised:
        StudySpec.model_validate(data)
    assert problems_from_validation_error(raised.value, data)[0]["field"] == "pruner.percentile"


def rejection(**fields: Any) -> InvalidSpec:
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(spec(**fields), CATALOG)
    return raised.value


def test_cmaes_refuses_a_categorical_parameter_and_names_it() -> None:
    space = {**SPACE, "act": {"type": "categorical", "choices": ["relu", "tanh"]}}
    error = rejection(space=space, sampler={"name": "cmaes"})
    assert error.field == "space.act" and "categorical" in error.message
    check_study_spec(spec(space=space, sampler={"name": "qmc"}), CATALOG)  # qmc maps categoricals
    check_study_spec(spec(space=space, sampler={"name": "gp"}), CATALOG)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"sampler": {"name": "gp"}}, "sampler.name"),
        ({"pruner": {"name": "wilcoxon"}}, "pruner.name"),
        (
            {"pruner": {"name": "patient", "patience": 1, "wrapped": {"name": "wilcoxon"}}},
            "pruner.wrapped.name",
        ),
    ],
)
def test_a_choice_whose_packages_are_missing_is_refused(
    monkeypatch: pytest.MonkeyPatch, fields: dict[str, Any], field: str
) -> None:
    monkeypatch.setattr(validation, "find_spec", lambda name: None)
    error = rejection(**fields)
    assert error.field == field and "scipy" in error.message


@pytest.mark.parametrize(
    ("pruner", "field"),
    [
        ({"name": "median", "n_warmup_steps": 11}, "pruner.n_warmup_steps"),
        ({"name": "threshold", "upper": 1, "n_warmup_steps": 11}, "pruner.n_warmup_steps"),
        (
            {
                "name": "successive_halving",
                "min_resource": 3,
                "reduction_factor": 4,
                "min_early_stopping_rate": 1,
            },
            "pruner.min_resource",
        ),
        ({"name": "patient", "patience": 9}, "pruner.patience"),
        ({"name": "wilcoxon", "n_startup_steps": 11}, "pruner.n_startup_steps"),
        (
            {"name": "patient", "patience": 1, "wrapped": {"name": "median", "n_warmup_steps": 12}},
            "pruner.wrapped.n_warmup_steps",
        ),
    ],
)
def test_a_pruner_that_could_only_act_after_the_last_epoch_is_refused(
    pruner: dict[str, Any], field: str
) -> None:
    error = rejection(pruner=pruner, trainer={"name": "my-trainer", "epochs": 10})
    assert error.field == field and "never prune" in error.message


def test_a_pruner_that_acts_by_the_last_epoch_is_accepted() -> None:
    for pruner in (
        {"name": "median", "n_warmup_steps": 10},
        {"name": "successive_halving", "min_resource": 10},
        {"name": "patient", "patience": 8},
    ):
        check_study_spec(spec(pruner=pruner, trainer={"name": "my-trainer", "epochs": 10}), CATALOG)
