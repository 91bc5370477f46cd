"""A study's creation is all or nothing for its client, on SQLite and PostgreSQL: where a write
fails part way (a trigger refuses it, standing for an outage: ``tests/support/refusals.py``), the
error comes back, no part of the study stays (neither its record, nor Optuna's study holding the
name, nor part of a warm start), and the same request made again creates it."""

from __future__ import annotations

import uuid
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.dispatchers import DoNothingDispatcher
from tests.support.refusals import REFUSAL, inserts_refused

pytestmark = pytest.mark.integration


@pytest.fixture
def tuner(database: Database) -> Tuner:
    return Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed())


def spec(name: str, **extra: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "sampler": {"name": "random", "seed": 1},
            "budget": {"n_trials": 6, "max_concurrent_trials": 2},
            **extra,
        }
    )


def causes(error: BaseException | None) -> str:
    """The messages of an error and of the errors it was raised from (Optuna wraps the
    database's)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return " / ".join(messages)


def assert_no_study_named(tuner: Tuner, database: Database, name: str) -> None:
    assert name not in [view.name for view in tuner.studies()]
    assert name not in optuna.get_all_study_names(storage=database.optuna)


def test_a_creation_whose_enqueued_trials_are_refused_leaves_nothing_and_can_be_made_again(
    tuner: Tuner, database: Database
) -> None:
    name = f"enqueue-{uuid.uuid4().hex[:8]}"
    asked = spec(name, enqueue=[{"x": 0.25}, {"x": 0.75}])
    with inserts_refused(database, "trial_system_attributes", "NEW.key = 'fixed_params'"):
        with pytest.raises(Exception) as refused:
            tuner.create_study(asked)
        assert REFUSAL in causes(refused.value)
        assert_no_study_named(tuner, database, name)
    created = tuner.create_study(asked)
    assert created.name == name


def test_a_warm_start_copied_part_way_leaves_nothing_and_can_be_made_again(
    tuner: Tuner, database: Database
) -> None:
    source = tuner.create_study(spec(f"source-{uuid.uuid4().hex[:8]}"))
    values = []
    for _ in range(3):
        trial = tuner.ask(source.study_id)
        values.append(trial.params["x"])
        tuner.complete(trial.trial_id, TrialState.COMPLETE, values[-1], None, trial.lease)
    name = f"warm-{uuid.uuid4().hex[:8]}"
    asked = spec(name, warm_start={"study_id": source.study_id})
    second_copy = f"NEW.value = {values[1]!r}"  # the first trial is copied, then the second fails
    with inserts_refused(database, "trial_values", second_copy):
        with pytest.raises(Exception) as refused:
            tuner.create_study(asked)
        assert REFUSAL in causes(refused.value)
        assert_no_study_named(tuner, database, name)
    warm = tuner.create_study(asked)
    assert [trial.state for trial in tuner.study_trials(warm.study_id)] == ["complete"] * 3
