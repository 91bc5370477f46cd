"""The typed Python client against the real service: submit, wait, read, steer, ask/report/complete."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from cli.local_stack import LocalStack
from client import (
    Assignment,
    Best,
    ConflictError,
    HPOClient,
    InvalidRequestError,
    NotFoundError,
    Pareto,
    Study,
    StudyTimeout,
    Trial,
    TrialGone,
)
from client.errors import problems_of
from service.settings import Settings
from tests.integration.conftest import unique

pytestmark = pytest.mark.integration
N_TRIALS = 4
EPOCHS = 3


def wine_study() -> dict[str, Any]:
    """A study the built-in trainer finishes in seconds."""
    return {
        "name": unique("client-wine"),
        "space": {
            "lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True},
            "hidden": {"type": "int", "low": 16, "high": 64, "step": 16},
        },
        "sampler": {"name": "tpe", "seed": 3},
        "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "wine", "epochs": EPOCHS},
    }


def external_study(n_trials: int = 2) -> dict[str, Any]:
    """A study with no trainer: this test trains the 'model' itself."""
    return {
        "name": unique("client-external"),
        "space": {"x": {"type": "float", "low": -2.0, "high": 2.0}},
        "pruner": {"name": "none"},
        "budget": {"n_trials": n_trials, "max_concurrent_trials": 1},
    }


@pytest.fixture(scope="module")
def hpo(stack: LocalStack) -> HPOClient:
    return HPOClient(stack.url)


@pytest.fixture(scope="module")
def finished(hpo: HPOClient, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Study:
    """A study submitted from a YAML file and waited for."""
    path = tmp_path_factory.mktemp("client") / "study.yaml"
    path.write_text(yaml.safe_dump(wine_study()))
    submitted = hpo.submit(path)
    assert submitted.state == "running"
    try:
        return hpo.wait(submitted.study_id, timeout=240, poll=0.3)
    except StudyTimeout as timeout:
        raise AssertionError(f"{timeout}\n{stack.logs()}") from None


@pytest.mark.slow
def test_wait_returns_the_complete_study_with_typed_fields(finished: Study) -> None:
    assert isinstance(finished, Study)
    assert finished.state == "complete" and finished.ended
    assert finished.n_trials == N_TRIALS and finished.n_finished == N_TRIALS
    assert finished.counts["complete"] + finished.counts["pruned"] == N_TRIALS
    assert finished.direction == "minimize" and finished.metric == "validation_loss"
    assert isinstance(finished.best, Best) and math.isfinite(finished.best.value)
    assert finished.spec["trainer"]["dataset"] == "wine"
    assert finished.preflight is not None and finished.preflight["state"] == "passed"


@pytest.mark.slow
def test_trials_and_best_are_typed_and_agree(hpo: HPOClient, finished: Study) -> None:
    trials = hpo.trials(finished.study_id)
    assert len(trials) == N_TRIALS and all(isinstance(trial, Trial) for trial in trials)
    assert all(trial.finished and set(trial.params) == {"lr", "hidden"} for trial in trials)
    for trial in trials:
        assert sorted(trial.intermediate_values) == list(
            range(1, len(trial.intermediate_values) + 1)
        )
    complete_trial = next(trial for trial in trials if trial.state == "complete")
    assert complete_trial.provenance and complete_trial.provenance["data_sha256"]
    assert complete_trial.epoch_metrics and "train_loss" in complete_trial.epoch_metrics[0]
    best = hpo.best(finished.study_id)
    complete = [trial.value for trial in trials if trial.state == "complete"]
    assert best.value == min(value for value in complete if value is not None)
    assert best == finished.best


@pytest.mark.slow
def test_the_best_model_is_the_best_trial_s_checkpoint(hpo: HPOClient, finished: Study) -> None:
    content = hpo.best_model(finished.study_id)
    header_length = int.from_bytes(content[:8], "little")  # safetensors: a JSON header first
    header = json.loads(content[8 : 8 + header_length])
    info = json.loads(header["__metadata__"]["hpo.model"])
    assert info["params"] == hpo.best(finished.study_id).params


def test_a_study_without_a_checkpoint_has_no_best_model(hpo: HPOClient) -> None:
    study = hpo.submit(external_study(n_trials=1))
    trial = hpo.ask(study.study_id)
    hpo.complete(trial, value=0.5)
    with pytest.raises(NotFoundError):
        hpo.best_model(study.study_id)


def test_external_training_with_ask_report_complete(hpo: HPOClient) -> None:
    study = hpo.submit(external_study(n_trials=2))
    for _ in range(2):
        trial = hpo.ask(study.study_id)
        assert isinstance(trial, Assignment) and trial.lease
        # How often to report or send a heartbeat: the stack's setting, the default.
        assert trial.lease_ttl_s == Settings.model_fields["lease_ttl_s"].default
        x = trial.params["x"]
        for step in (1, 2):
            assert hpo.report(trial, step, x * x + 1 / step) is False
            hpo.heartbeat(trial)  # a long epoch's renewal, between reports
        finished = hpo.complete(trial, value=x * x)
        assert finished.state == "complete" and finished.value == pytest.approx(x * x)
        assert finished.intermediate_values == {
            1: pytest.approx(x * x + 1),
            2: pytest.approx(x * x + 0.5),
        }
    done = hpo.wait(study.study_id, timeout=30, poll=0.2)
    assert done.state == "complete" and done.counts["complete"] == 2
    assert done.best is not None and done.best.value == min(
        t.value or 0 for t in hpo.trials(study.study_id)
    )
    with pytest.raises(ConflictError) as refused:
        hpo.ask(study.study_id)
    assert refused.value.status == 409


def test_a_study_of_two_objectives_has_a_typed_pareto_front(hpo: HPOClient) -> None:
    study = hpo.submit(
        {
            **external_study(n_trials=3),
            "objectives": [{"metric": "error"}, {"metric": "cost"}],
            "sampler": {"name": "random", "seed": 0},
        }
    )
    figures = [(0.1, 3.0), (0.2, 1.0), (0.3, 2.0)]  # the third is beaten by the second
    for error, cost in figures:
        trial = hpo.ask(study.study_id)
        hpo.complete(trial, metrics={"error": error, "cost": cost})
    front = hpo.pareto(study.study_id)
    assert isinstance(front, Pareto) and [o.metric for o in front.objectives] == ["error", "cost"]
    assert sorted(t.values or [] for t in front.trials) == [[0.1, 3.0], [0.2, 1.0]]


def test_a_report_after_completion_raises_trial_gone_which_is_a_conflict(hpo: HPOClient) -> None:
    study = hpo.submit(external_study(n_trials=1))
    trial = hpo.ask(study.study_id)
    hpo.complete(trial, value=1.0)
    with pytest.raises(TrialGone) as gone:
        hpo.report(trial, 3, 0.5)
    assert isinstance(gone.value, ConflictError) and gone.value.status == 409


def test_a_completion_after_the_study_s_deletion_is_a_trial_gone_not_found(
    hpo: HPOClient,
) -> None:
    study = hpo.submit(external_study(n_trials=1))
    trial = hpo.ask(study.study_id)
    hpo.delete(study.study_id)
    with pytest.raises(NotFoundError) as gone:
        hpo.complete(trial, value=0.5)
    assert isinstance(gone.value, TrialGone) and gone.value.status == 404


def test_numpy_and_torch_scalars_are_sent_as_the_numbers_they_hold(hpo: HPOClient) -> None:
    study = hpo.submit(external_study(n_trials=1))
    trial = hpo.ask(study.study_id)
    assert hpo.report(trial, np.int64(1), np.float32(0.5)) is False
    assert hpo.report(trial, 2, torch.tensor(0.25)) is False
    finished = hpo.complete(trial, value=np.float64(0.125))
    assert finished.intermediate_values == {1: 0.5, 2: 0.25} and finished.value == 0.125


def test_several_values_where_one_goes_is_refused_before_any_request(hpo: HPOClient) -> None:
    study = hpo.submit(external_study(n_trials=1))
    trial = hpo.ask(study.study_id)
    with pytest.raises(TypeError, match="ndarray is not JSON serializable"):
        hpo.report(trial, 1, np.array([0.5, 0.4]))  # type: ignore[arg-type]
    assert hpo.trials(study.study_id)[0].intermediate_values == {}


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_value_that_is_no_finite_number_is_refused_naming_value(
    hpo: HPOClient, value: float
) -> None:
    study = hpo.submit(external_study(n_trials=1))
    trial = hpo.ask(study.study_id)
    with pytest.raises(InvalidRequestError) as refused:
        hpo.report(trial, 1, value)
    assert problems_of(refused.value) == [
        {"field": "value", "problem": "Input should be a finite number"}
    ]
    with pytest.raises(InvalidRequestError):
        hpo.complete(trial, value=value)
    assert hpo.trials(study.study_id)[0].state == "running"


def test_stop_pause_resume_and_delete(hpo: HPOClient) -> None:
    study = hpo.submit(external_study(n_trials=3))
    assert hpo.pause(study.study_id).state == "paused"
    assert hpo.resume(study.study_id).state == "running"
    stopped = hpo.stop(study.study_id)
    assert stopped.state == "stopped" and stopped.ended
    assert hpo.wait(study.study_id, timeout=5).state == "stopped"
    hpo.delete(study.study_id)
    with pytest.raises(NotFoundError):
        hpo.status(study.study_id)


def test_errors_map_to_clear_exceptions(hpo: HPOClient) -> None:
    with pytest.raises(NotFoundError) as missing:
        hpo.best(10**9)
    assert missing.value.status == 404
    bad = {
        "name": unique("client-bad"),
        "space": {"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}},
    }
    with pytest.raises(InvalidRequestError) as invalid:
        hpo.submit(bad)
    assert any(problem["field"] == "space.lr" for problem in problems_of(invalid.value))
    assert invalid.value.problems == problems_of(invalid.value)
    empty = hpo.submit(external_study())
    with pytest.raises(NotFoundError, match="no complete trial"):
        hpo.best(empty.study_id)


def test_wait_times_out_with_the_last_state(hpo: HPOClient) -> None:
    study = hpo.submit(external_study())
    with pytest.raises(StudyTimeout) as timed_out:
        hpo.wait(study.study_id, timeout=0.5, poll=0.1)
    assert timed_out.value.study.study_id == study.study_id
    assert timed_out.value.study.state == "running"


def test_a_wrong_file_is_refused_before_any_request(hpo: HPOClient, tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- not a study\n")
    with pytest.raises(ValueError, match="does not hold a study definition"):
        hpo.submit(path)
