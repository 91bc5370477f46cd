"""A user's write to a trial without its lease: a trial a program asked for takes it (the
program is the user's own), one a worker runs or is sent to run refuses it, naming ``lease``, so
that no value of a user's lands under a worker's training. On SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from optuna.trial import TrialState

from service.errors import InvalidSpec
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.tokens import DEFAULT_TENANT
from service.trainer_catalog import TrainerCatalog
from service.trial_provenance import TrialProvenance
from service.tuner import Tuner
from tests.support.dispatchers import DoNothingDispatcher

pytestmark = pytest.mark.integration
WRITES: dict[str, Callable[[Tuner, int, str | None], object]] = {
    "report": lambda t, trial, lease: t.report(trial, 1, 0.5, lease, DEFAULT_TENANT),
    "reports": lambda t, trial, lease: t.report_many(trial, [(1, 0.5)], lease, DEFAULT_TENANT),
    "heartbeat": lambda t, trial, lease: t.heartbeat(trial, lease, DEFAULT_TENANT),
    "provenance": lambda t, trial, lease: t.record_provenance(
        trial, TrialProvenance(seed=1), lease, DEFAULT_TENANT
    ),
    "complete": lambda t, trial, lease: t.complete(
        trial, TrialState.COMPLETE, 0.5, None, lease, DEFAULT_TENANT
    ),
}


@pytest.fixture
def tuner(database: Database) -> Tuner:
    return Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed())


def study(tuner: Tuner, trainer: bool) -> int:
    spec = {
        "name": f"unleased-{uuid.uuid4().hex[:8]}",
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        "budget": {"n_trials": 2, "max_concurrent_trials": 1},
        "pruner": {"name": "none"},
        "preflight": {"enabled": False},
    }
    if trainer:
        spec["trainer"] = {"name": "mlp", "dataset": "wine", "epochs": 3}
    return tuner.create_study(StudySpec.model_validate(spec)).study_id


def untouched(tuner: Tuner, study_id: int) -> None:
    [trial] = tuner.study_trials(study_id)
    assert trial.state == "running" and trial.intermediate_values == {}
    assert trial.provenance is None


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_queued_trial_refuses_a_user_s_write_without_a_lease(tuner: Tuner, write: str) -> None:
    study_id = study(tuner, trainer=True)
    [trial] = tuner.study_trials(study_id)
    with pytest.raises(InvalidSpec, match=r"run by a worker \(it is queued\)") as refused:
        WRITES[write](tuner, trial.trial_id, None)
    assert refused.value.field == "lease"
    untouched(tuner, study_id)


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_claimed_trial_takes_a_user_s_write_with_its_lease_alone(
    tuner: Tuner, write: str
) -> None:
    study_id = study(tuner, trainer=True)
    [trial] = tuner.study_trials(study_id)
    claimed = tuner.claim(trial.trial_id, "node-1:42")
    with pytest.raises(InvalidSpec, match="run by a worker: ") as refused:
        WRITES[write](tuner, trial.trial_id, None)
    assert refused.value.field == "lease" and "node-1" not in str(refused.value)  # a user's
    untouched(tuner, study_id)
    WRITES[write](tuner, trial.trial_id, claimed.lease)


@pytest.mark.parametrize("write", sorted(WRITES))
def test_an_asked_trial_takes_its_program_s_write_without_a_lease(tuner: Tuner, write: str) -> None:
    study_id = study(tuner, trainer=False)
    trial = tuner.ask(study_id, DEFAULT_TENANT)
    WRITES[write](tuner, trial.trial_id, None)
    assert tuner.study_trials(study_id)[0].state == (
        "complete" if write == "complete" else "running"
    )
