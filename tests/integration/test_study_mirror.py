"""Asks answered from a study's in-memory mirror suggest what Optuna's own ask on the database
suggests, for the same seed and history, and write the trial in one transaction."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from optuna.trial import TrialState

from service import trial_lifecycle
from service.dispatch import NoDispatcher
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.optuna_rows import OptunaTrialRows
from service.study_mirror import StudyMirror
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.conftest import BACKENDS
from tests.support.transactions import writing_transactions

PLAIN_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "width": {"type": "int", "low": 8, "high": 256},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
}
CONDITIONAL_SPACE = {
    "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
    "lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
    "momentum": {
        "type": "float",
        "low": 0.0,
        "high": 0.99,
        "condition": {"param": "optimizer", "in": ["sgd"]},
    },
}
SAMPLERS = {
    "tpe-multivariate": {"name": "tpe", "seed": 11, "n_startup_trials": 4},
    "tpe-independent": {"name": "tpe", "seed": 11, "n_startup_trials": 4, "multivariate": False},
    "random": {"name": "random", "seed": 11},
}
N_TRIALS = 36


def study_spec(sampler: dict[str, Any], space: dict[str, Any], **extra: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "mirror-equivalence",
            "space": space,
            "sampler": sampler,
            "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": 9},
            "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 3},
            **extra,
        }
    )


def loss(params: dict[str, Any], step: int) -> float:
    """A made-up validation loss that depends on every parameter and falls with the steps."""
    value = abs(math.log10(params["lr"]) + 2.0) + 1.0 / step
    value += params.get("width", 64) / 1000 + params.get("momentum", 0.5) / 10
    return value + {"relu": 0.0, "tanh": 0.1, "gelu": 0.2}.get(params.get("act", "relu"), 0.0)


def run_study(url: str, spec: StudySpec) -> list[dict[str, Any]]:
    """Drive a study with three trials in flight at once (so running trials weigh in), each
    seventh trial failing; the parameters of every trial in the order they were asked."""
    database = Database(url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    try:
        study_id = tuner.create_study(spec).study_id
        asked: list[dict[str, Any]] = []
        running: list[Any] = []
        while len(asked) < N_TRIALS or running:
            while len(running) < 3 and len(asked) < N_TRIALS:
                trial = tuner.ask(study_id)
                asked.append(trial.params)
                running.append(trial)
            finish(tuner, running.pop(0))
        return asked
    finally:
        database.dispose()


def finish(tuner: Tuner, trial: Any) -> None:
    if trial.number % 7 == 6:
        tuner.complete(trial.trial_id, TrialState.FAIL, None, "made to fail", trial.lease)
        return
    for step in range(1, 10):
        if tuner.report(trial.trial_id, step, loss(trial.params, step), trial.lease):
            return
    tuner.complete(trial.trial_id, TrialState.COMPLETE, loss(trial.params, 9), None, trial.lease)


def count_mirrored_asks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The trials written by the mirror's path from now on (the real writer, counted)."""
    written: list[int] = []
    insert_running = OptunaTrialRows.insert_running

    def counted(self: OptunaTrialRows, *args: Any) -> tuple[int, int]:
        trial_id, number = insert_running(self, *args)
        written.append(number)
        return trial_id, number

    monkeypatch.setattr(OptunaTrialRows, "insert_running", counted)
    return written


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("space", ["plain", "conditional"])
def test_the_mirror_suggests_what_optunas_ask_on_the_database_suggests(
    backend: str,
    sampler: str,
    space: str,
    new_database_url: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = study_spec(SAMPLERS[sampler], PLAIN_SPACE if space == "plain" else CONDITIONAL_SPACE)
    with monkeypatch.context() as through_optuna:
        through_optuna.setattr(trial_lifecycle, "mirrors", lambda spec: False)
        expected = run_study(new_database_url(backend), spec)
    mirrored = count_mirrored_asks(monkeypatch)
    assert run_study(new_database_url(backend), spec) == expected
    assert mirrored == list(range(N_TRIALS))  # every ask took the mirror's path


def test_enqueued_trials_run_first_and_the_mirror_takes_over_after(
    new_database_url: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue = [{"lr": 0.01, "width": 32, "act": "tanh"}, {"lr": 0.5, "width": 200, "act": "relu"}]
    spec = study_spec(SAMPLERS["tpe-multivariate"], PLAIN_SPACE, enqueue=enqueue)
    with monkeypatch.context() as through_optuna:
        through_optuna.setattr(trial_lifecycle, "mirrors", lambda spec: False)
        expected = run_study(new_database_url("sqlite"), spec)
    mirrored = count_mirrored_asks(monkeypatch)
    asked = run_study(new_database_url("sqlite"), spec)
    assert asked[:2] == enqueue
    assert asked == expected
    assert mirrored == list(range(2, N_TRIALS))  # the enqueued two took Optuna's path


@contextmanager
def tpe_study(database_url: str) -> Iterator[tuple[Database, Tuner, int]]:
    """A service on a fresh database with a multivariate TPE study: its database, tuner, study."""
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    try:
        spec = study_spec(SAMPLERS["tpe-multivariate"], PLAIN_SPACE)
        yield database, tuner, tuner.create_study(spec).study_id
    finally:
        database.dispose()


@pytest.mark.parametrize("mirrored", [True, False])
def test_a_mirrored_ask_writes_the_trial_its_parameters_and_lease_in_one_transaction(
    database_url: str, mirrored: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not mirrored:
        monkeypatch.setattr(trial_lifecycle, "mirrors", lambda spec: False)
    with tpe_study(database_url) as (database, tuner, study_id):
        finish(tuner, tuner.ask(study_id))
        optuna_engine = database.optuna._backend.engine  # type: ignore[attr-defined]
        with writing_transactions([database.engine, optuna_engine]) as counted:
            trial = tuner.ask(study_id)
        stored = database.optuna.get_trial(trial.trial_id)
        assert stored.params == trial.params and stored.state == TrialState.RUNNING
        assert stored.system_attrs[trial_lifecycle.SEED_ATTR] == trial.seed
        tuner.report(trial.trial_id, 1, 1.0, trial.lease)  # its lease holds
        if mirrored:
            assert len(counted) == 1
        else:  # Optuna's path: the trial, each parameter, the seed and the lease apart
            assert len(counted) >= 5


def test_a_trial_created_behind_the_mirrors_back_sends_the_ask_to_optunas_path(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tpe_study(database_url) as (database, tuner, study_id):
        for _ in range(6):  # past TPE's start-up trials: its search space is in use
            finish(tuner, tuner.ask(study_id))
        sample = StudyMirror.sample

        def sample_then_another_writer(self: StudyMirror, *args: Any) -> Any:
            sampled = sample(self, *args)
            database.optuna.create_new_trial(study_id)  # e.g. a plain Optuna client
            return sampled

        with monkeypatch.context() as racing:
            racing.setattr(StudyMirror, "sample", sample_then_another_writer)
            trial = tuner.ask(study_id)
        assert trial.number == 7  # after the other writer's trial 6
        assert database.optuna.get_trial(trial.trial_id).params == trial.params
        finish(tuner, trial)
        assert tuner.ask(study_id).number == 8  # and the mirror, made anew, goes on
