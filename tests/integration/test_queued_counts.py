"""A study's counts say how many of its running trials wait for a worker (``queued``: sent, not
claimed yet), on SQLite and PostgreSQL: a cluster scaled to zero shows its trials queued, not
training."""

from __future__ import annotations

import uuid

import pytest
from optuna.trial import TrialState

from service.leases import LeaseTimes
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.dispatchers import DoNothingDispatcher

pytestmark = pytest.mark.integration


@pytest.fixture
def tuner(database: Database) -> Tuner:
    """Sends to no worker: every trial a study starts stays queued until a test claims it."""
    times = LeaseTimes(ttl_s=30.0, dispatch_timeout_s=30.0)
    return Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed(), times)


def trainer_study(tuner: Tuner) -> int:
    spec = StudySpec.model_validate(
        {
            "name": f"queued-{uuid.uuid4().hex[:8]}",
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
            "sampler": {"name": "random", "seed": 3},
            "budget": {"n_trials": 6, "max_concurrent_trials": 3},
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 1},
            "preflight": {"enabled": False},
        }
    )
    return tuner.create_study(spec).study_id


def running_and_queued(tuner: Tuner, study_id: int) -> tuple[int, int]:
    counts = tuner.study(study_id).counts
    return counts["running"], counts["queued"]


def test_trials_sent_and_not_claimed_count_as_queued_until_a_worker_claims_them(
    tuner: Tuner,
) -> None:
    study_id = trainer_study(tuner)
    assert running_and_queued(tuner, study_id) == (3, 3)
    first, second, _ = tuner.study_trials(study_id)
    claimed = tuner.claim(first.trial_id, "worker-a:1:task")
    tuner.claim(second.trial_id, "worker-b:2:task")
    assert running_and_queued(tuner, study_id) == (3, 1)
    tuner.complete(first.trial_id, TrialState.COMPLETE, 0.5, None, claimed.lease)
    assert running_and_queued(tuner, study_id) == (3, 2)  # its place went to a fresh trial


def test_a_trial_a_program_asked_for_is_running_not_queued(tuner: Tuner) -> None:
    spec = StudySpec.model_validate(
        {
            "name": f"asked-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "budget": {"n_trials": 2},
        }
    )
    study_id = tuner.create_study(spec).study_id
    tuner.ask(study_id)
    assert running_and_queued(tuner, study_id) == (1, 0)
