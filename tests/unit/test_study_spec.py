"""The study definition: defaults, checks across fields, and the grid."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from pydantic import ValidationError

from service.errors import InvalidSpec
from service.spec.grid import contains, grid_of
from service.spec.problems import field_path, problems_from_validation_error
from service.spec.space import FloatParam, IntParam
from service.spec.study_spec import StudySpec
from service.spec.validation import MAX_GP_DISCRETE_VALUES, check_study_spec
from service.trainer_catalog import TrainerCatalog

CATALOG = TrainerCatalog(frozenset({"mlp", "my-trainer"}))


def make(**fields: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "s",
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1, "log": True}},
            **fields,
        }
    )


def test_everything_but_name_and_space_has_a_default() -> None:
    spec = make()
    assert (spec.direction, spec.metric) == ("minimize", "validation_loss")
    assert spec.sampler.name == "tpe" and spec.pruner.name == "hyperband"
    assert spec.budget.n_trials == 20 and spec.trainer is None


def test_the_issue_example_is_accepted_and_hyperband_takes_the_trainer_epochs() -> None:
    spec = StudySpec.model_validate(
        {
            "name": "digits-mlp",
            "direction": "minimize",
            "space": {
                "lr": {"type": "float", "low": 1e-5, "high": 0.3, "log": True},
                "batch_size": {"type": "int", "low": 16, "high": 256, "log": True},
                "hidden": {"type": "int", "low": 16, "high": 512, "step": 16},
                "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            },
            "sampler": {"name": "tpe", "seed": 0},
            "pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3},
            "budget": {"n_trials": 50, "max_concurrent_trials": 4},
            "trainer": {"name": "mlp", "dataset": "digits", "epochs": 27},
        }
    )
    resolved = check_study_spec(spec, CATALOG)
    assert resolved.pruner.max_resource == 27  # type: ignore[union-attr]


def test_a_sampler_or_pruner_without_a_name_takes_the_default_kind() -> None:
    spec = make(sampler={"seed": 4}, pruner={"reduction_factor": 2})
    assert spec.sampler.name == "tpe" and spec.sampler.seed == 4
    assert spec.pruner.name == "hyperband"


def test_a_derived_grid_enumerates_categorical_int_and_stepped_float() -> None:
    spec = StudySpec.model_validate(
        {
            "name": "g",
            "sampler": {"name": "grid"},
            "space": {
                "c": {"type": "categorical", "choices": ["a", "b"]},
                "n": {"type": "int", "low": 1, "high": 5, "step": 2},
                "f": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
            },
        }
    )
    assert grid_of(spec) == {"c": ["a", "b"], "n": [1, 3, 5], "f": [0.0, 0.25, 0.5]}
    assert check_study_spec(spec, CATALOG).budget.n_trials == 18


def test_a_derived_grid_over_a_stepped_float_counts_in_decimal_and_stops_at_high() -> None:
    """0.1 * 3 was 0.30000000000000004, and the last value 0.7000000000000001, past ``high``
    (outside the space: a warm start from the study skipped that trial)."""
    param = FloatParam(type="float", low=0.0, high=0.7, step=0.1)
    assert param.grid_values() == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    assert all(contains(param, value) for value in param.grid_values() or [])


def test_a_grid_takes_no_enqueued_configuration() -> None:
    """Optuna's grid sampler ran an enqueued point again and never ran another (or, with a
    configuration that sets some parameters only, failed the creation: a 500)."""
    grid = {"name": "grid", "grid": {"lr": [0.1, 0.01]}}
    for enqueued in ({"lr": 0.1}, {}):
        with pytest.raises(InvalidSpec) as raised:
            check_study_spec(make(sampler=grid, enqueue=[enqueued]), CATALOG)
        assert raised.value.field == "enqueue" and "sampler.grid" in str(raised.value)


def test_more_enqueued_configurations_than_the_budget_are_refused() -> None:
    """They all ran, past n_trials."""
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(budget={"n_trials": 1}, enqueue=[{"lr": 0.1}, {"lr": 0.2}]), CATALOG)
    assert raised.value.field == "enqueue"
    assert "2 configurations, more than budget.n_trials (1)" in str(raised.value)
    with pytest.raises(InvalidSpec, match=r"\(20, its default\)"):
        check_study_spec(make(enqueue=[{"lr": 0.1}] * 21), CATALOG)
    assert len(check_study_spec(make(enqueue=[{"lr": 0.1}] * 20), CATALOG).enqueue) == 20


def test_grid_values_are_distinct_as_numbers_and_each_bad_one_is_named() -> None:
    space = {"n": {"type": "int", "low": 0, "high": 10, "step": 2}}
    duplicated = {"name": "grid", "grid": {"n": [8, 8.0]}}
    with pytest.raises(InvalidSpec, match="distinct"):
        check_study_spec(make(space=space, sampler=duplicated), CATALOG)
    bad = {"name": "grid", "grid": {"n": [2, 5, 12, "x"]}}
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(space=space, sampler=bad), CATALOG)
    assert [problem for _, problem in raised.value.problems] == [
        "5 is off the step of 'n': its values are 0 + k * 2",
        "12 is outside [0, 10], the range of 'n'",
        "'x' is no number, and 'n' is a number",
    ]


def test_an_explicit_grid_must_fit_the_space() -> None:
    spec = make(sampler={"name": "grid", "grid": {"lr": [0.1, 0.01]}})
    assert check_study_spec(spec, CATALOG).budget.n_trials == 2
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(sampler={"name": "grid", "grid": {"lr": [0.1, 5.0]}}), CATALOG)
    assert raised.value.field == "sampler.grid.lr"


def test_a_grid_too_large_is_refused() -> None:
    space = {f"p{i}": {"type": "int", "low": 1, "high": 10} for i in range(6)}
    spec = StudySpec.model_validate({"name": "big", "space": space, "sampler": {"name": "grid"}})
    with pytest.raises(InvalidSpec, match="more than the limit"):
        check_study_spec(spec, CATALOG)


@pytest.mark.parametrize(
    ("param", "value", "inside"),
    [
        (IntParam(type="int", low=1, high=9, step=2), 5, True),
        (IntParam(type="int", low=1, high=9, step=2), 4, False),
        (IntParam(type="int", low=1, high=9), True, False),
        (FloatParam(type="float", low=0, high=1, step=0.1), 0.3, True),
        (FloatParam(type="float", low=0, high=1, step=0.1), 0.35, False),
        (FloatParam(type="float", low=0, high=1), 1.5, False),
        (FloatParam(type="float", low=0, high=1), "0.5", False),
    ],
)
def test_grid_values_are_checked_against_their_parameter(
    param: Any, value: Any, inside: bool
) -> None:
    assert contains(param, value) is inside


def test_a_user_trainer_s_whole_epochs_written_as_a_float_are_hyperband_s_resource() -> None:
    spec = check_study_spec(make(trainer={"name": "my-trainer", "epochs": 10.0}), CATALOG)
    assert spec.pruner.max_resource == 10  # type: ignore[union-attr]


def test_a_trainer_the_service_knows_is_checked_and_others_pass_through() -> None:
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(trainer={"name": "mlp", "epochs": 0}), CATALOG)
    assert raised.value.field == "trainer.epochs"
    assert (
        check_study_spec(make(trainer={"name": "my-trainer", "anything": [1, 2]}), CATALOG).trainer
        is not None
    )


@pytest.mark.parametrize(
    ("trainer", "field", "words"),
    [
        ({"seed": True}, "trainer.seed", "must be an integer, not a boolean"),
        ({"max_loss": True}, "trainer.max_loss", "must be a number, not a boolean"),
        ({"params": {"hidden": True}}, "trainer.params", "hidden: must be an integer, not a bool"),
        ({"params": {"lr": False}}, "trainer.params", "lr: must be a number, not a boolean"),
        ({"dataset": "wine", "model": "cnn"}, "trainer.model", "needs image data"),
    ],
)
def test_the_built_in_trainer_s_settings_take_no_boolean_for_a_number_and_name_the_field(
    trainer: dict[str, Any], field: str, words: str
) -> None:
    """``"seed": true`` was read as 1 and ``"hidden": true`` trained one hidden unit; the CNN's
    refusal named ``trainer.body``."""
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(trainer={"name": "mlp", **trainer}), CATALOG)
    assert raised.value.field == field and words in str(raised.value)


@pytest.mark.parametrize(
    ("epochs", "words"),
    [
        (0, "greater than or equal to 1 (Hyperband's max_resource is the trainer's epochs)"),
        (-1, "greater than or equal to 1"),
        (2_000_000_000, "at most 1000000000"),
        (2e9, "at most 1000000000"),  # JSON's 2e9 is a float
        (True, "not a boolean"),
        (2.5, "a whole number of epochs, not 2.5"),
        ("10", "a whole number of epochs, not '10'"),
    ],
)
def test_a_user_trainer_s_epochs_hyperband_cannot_use_are_refused_naming_them(
    epochs: object, words: str
) -> None:
    """Hyperband takes its max_resource from the trainer's epochs: checked as if written there,
    also for a trainer whose settings the service does not know (it answered 500)."""
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(trainer={"name": "my-trainer", "epochs": epochs}), CATALOG)
    assert raised.value.field == "trainer.epochs" and words in str(raised.value)


@pytest.mark.parametrize(
    ("name", "param", "field", "words"),
    [
        (
            "dropout",
            {"type": "float", "low": 0.0, "high": 1.0},
            "space.dropout.high",
            "less than 1",
        ),
        ("lr", {"type": "float", "low": -0.1, "high": 0.1}, "space.lr.low", "greater than 0"),
        ("layers", {"type": "int", "low": 1, "high": 17}, "space.layers.high", "16"),
        ("hidden", {"type": "float", "low": 16, "high": 512}, "space.hidden.type", "integer"),
        (
            "hidden",
            {"type": "float", "low": 16, "high": 20, "step": 0.5},
            "space.hidden.step",
            "integer",
        ),
        (
            "optimizer",
            {"type": "categorical", "choices": ["adam", "foo"]},
            "space.optimizer.choices.1",
            "'foo'",
        ),
    ],
)
def test_a_space_that_can_draw_a_value_the_trainer_refuses_is_refused(
    name: str, param: dict[str, Any], field: str, words: str
) -> None:
    spec = make(space={name: param}, trainer={"name": "mlp"})
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(spec, CATALOG)
    assert raised.value.field == field
    assert words in raised.value.message


@pytest.mark.parametrize(
    ("stepped", "words"),
    [
        (
            {"type": "float", "low": 0.0, "high": 1.0, "step": 0.3},
            "the values would be 0.0, 0.3, … up to 0.9; make high 0.9 or 1.2",
        ),
        (
            {"type": "float", "low": 0.9, "high": 0.99, "step": 0.1},
            "the values would be only low (0.9); make high 1.0",
        ),
        (
            {"type": "int", "low": 0, "high": 10, "step": 3},
            "the values would be 0, 3, … up to 9; make high 9 or 12",
        ),
        (  # a float's step of 1 too
            {"type": "float", "low": 0.5, "high": 2.0, "step": 1.0},
            "the values would be 0.5 and 1.5; make high 1.5 or 2.5",
        ),
    ],
)
def test_a_step_that_does_not_divide_the_range_is_refused_naming_the_values_it_reaches(
    stepped: dict[str, Any], words: str
) -> None:
    """Optuna would lower high to the last value reached, saying so only in the server's log."""
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(space={"x": stepped}), CATALOG)
    assert raised.value.field == "space.x.step"
    assert words in raised.value.message


@pytest.mark.parametrize(
    "stepped",
    [
        {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},  # 0.1 divides 1.0 as decimals
        {"type": "float", "low": 0.001, "high": 0.1, "step": 0.001},
        {"type": "int", "low": 16, "high": 512, "step": 16},
        # Optuna's decimals keep 28 digits: 1 - 1e-30 is 1 to them, which 0.5 divides.
        {"type": "float", "low": 1e-30, "high": 1.0, "step": 0.5},
    ],
)
def test_a_step_that_divides_the_range_as_written_is_taken(stepped: dict[str, Any]) -> None:
    param = check_study_spec(make(space={"x": stepped}), CATALOG).space["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns where it lowers high
        assert param.distribution().high == stepped["high"]  # as Optuna keeps it


@pytest.mark.parametrize(
    "body",
    [
        {"name": "bad name!", "space": {"x": {"type": "int", "low": 0, "high": 1}}},
        {
            "name": "s",
            "space": {"x": {"type": "float", "low": 0, "high": 1, "log": True, "step": 0.5}},
        },
        {"name": "s", "space": {"x": {"type": "categorical", "choices": [1, 1]}}},
        {"name": "s", "space": {"x": {"type": "float", "low": 0, "high": float("inf")}}},
        {
            "name": "s",
            "space": {"x": {"type": "int", "low": 0, "high": 1}},
            "direction": "sideways",
        },
        {"name": "s", "space": {f"p{i}": {"type": "int", "low": 0, "high": 1} for i in range(65)}},
    ],
)
def test_shapes_pydantic_refuses(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        StudySpec.model_validate(body)


def test_field_paths_leave_out_union_tags_but_keep_a_parameter_named_like_one() -> None:
    body = {"name": "s", "space": {"float": {"type": "float", "low": 3, "high": 1}}}
    with pytest.raises(ValidationError) as raised:
        StudySpec.model_validate(body)
    [problem] = problems_from_validation_error(raised.value, body)
    assert problem["field"] == "space.float"
    assert (
        field_path(("space", "lr", "float", "low"), {"space": {"lr": {"type": "float"}}})
        == "space.lr.low"
    )


def test_choices_equal_to_the_sampler_are_refused_on_submission_only() -> None:
    same = {"c": {"type": "categorical", "choices": [True, 1, 0.0]}}
    with pytest.raises(InvalidSpec) as refused:
        check_study_spec(make(space=same), CATALOG)
    assert refused.value.field == "space.c.choices"
    # A study stored before this check still loads.
    assert make(space=same).space["c"]


def test_the_gp_sampler_refuses_a_parameter_with_more_values_than_it_can_list() -> None:
    many = {"i": {"type": "int", "low": 0, "high": MAX_GP_DISCRETE_VALUES}}
    with pytest.raises(InvalidSpec) as raised:
        check_study_spec(make(space=many, sampler={"name": "gp"}), CATALOG)
    assert raised.value.field == "space.i"
    assert f"{MAX_GP_DISCRETE_VALUES + 1}" in raised.value.message
    few = {"i": {"type": "int", "low": 1, "high": MAX_GP_DISCRETE_VALUES}}
    assert check_study_spec(make(space=few, sampler={"name": "gp"}), CATALOG).space["i"]
    # Other samplers draw an int without listing its values.
    assert check_study_spec(make(space=many, sampler={"name": "tpe"}), CATALOG).space["i"]


def test_a_secret_that_is_the_mask_is_refused_at_submission_but_a_stored_one_loads() -> None:
    """A spec copied from an answer and sent back carries the mask as its secret; a study stored
    so (before the refusal) must still load, or its tenant's list would fail."""
    from service.spec.webhook import MASKED_SECRET

    stored = make(webhook={"url": "https://example.org/hook", "secret": MASKED_SECRET})
    assert stored.webhook is not None
    with pytest.raises(InvalidSpec) as refused:
        check_study_spec(stored, CATALOG)
    assert refused.value.field == "webhook.secret" and "masked value" in refused.value.message
