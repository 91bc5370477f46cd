"""What a worker states about a running trial (seed, trainer, data) is merged into its record and
renews its lease in one transaction, and is refused, changing nothing, once the trial is not the
worker's. On SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from optuna.trial import TrialState
from sqlalchemy import select

from service.dispatch import NoDispatcher
from service.errors import Conflict, NotFound
from service.leases import LeaseTimes
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord
from service.trainer_catalog import TrainerCatalog
from service.trial_provenance import TrialProvenance
from service.tuner import Tuner
from tests.support.transactions import writing_transactions

pytestmark = pytest.mark.integration
SHA = "ab" * 32


@pytest.fixture
def tuner(database: Database) -> Tuner:
    times = LeaseTimes(ttl_s=600, dispatch_timeout_s=3600)
    return Tuner(database, NoDispatcher(), TrainerCatalog.installed(), times)


def spec() -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"provenance-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": -5, "high": 5}},
            "budget": {"n_trials": 4},
        }
    )


def lease_expiry(database: Database, trial_id: int) -> object:
    with database.session() as session:
        return session.scalar(
            select(TrialLeaseRecord.expires_at).where(TrialLeaseRecord.trial_id == trial_id)
        )


def test_records_merge_in_one_transaction_each_and_renew_the_lease(
    tuner: Tuner, database: Database
) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
    before = lease_expiry(database, trial.trial_id)
    with writing_transactions(engines) as counted:
        tuner.record_provenance(trial.trial_id, TrialProvenance(seed=7, trainer="mlp"), trial.lease)
    assert len(counted) == 1
    assert lease_expiry(database, trial.trial_id) > before  # type: ignore[operator]
    view = tuner.record_provenance(
        trial.trial_id, TrialProvenance(dataset="digits", data_sha256=SHA), trial.lease
    )
    expected = {"seed": 7, "trainer": "mlp", "dataset": "digits", "data_sha256": SHA}
    assert view.provenance == expected
    assert tuner.study_trials(study.study_id)[0].provenance == expected


def test_a_record_is_refused_once_the_trial_is_not_the_workers_and_changes_nothing(
    tuner: Tuner,
) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.record_provenance(trial.trial_id, TrialProvenance(seed=7), trial.lease)
    with pytest.raises(Conflict, match="lease"):
        tuner.record_provenance(trial.trial_id, TrialProvenance(seed=8), "another-holder")
    tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None, trial.lease)
    with pytest.raises(Conflict, match="complete, not running"):
        tuner.record_provenance(trial.trial_id, TrialProvenance(seed=9), trial.lease)
    assert tuner.study_trials(study.study_id)[0].provenance == {"seed": 7}
    with pytest.raises(NotFound):
        tuner.record_provenance(10**9, TrialProvenance(seed=1), None)


def spec_with(pruner: dict[str, Any]) -> StudySpec:
    return StudySpec.model_validate({**spec().model_dump(mode="json"), "pruner": pruner})


@pytest.mark.parametrize(
    "pruner",
    [
        {"name": "hyperband", "min_resource": 1, "max_resource": 9},
        {"name": "none"},
        {"name": "median"},  # Optuna's general path: its own transaction first
    ],
)
def test_reports_bring_provenance_recorded_with_them(
    tuner: Tuner, database: Database, pruner: dict[str, Any]
) -> None:
    study = tuner.create_study(spec_with(pruner))
    trial = tuner.ask(study.study_id)
    tuner.record_provenance(trial.trial_id, TrialProvenance(trainer="mlp"), trial.lease)
    engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
    with writing_transactions(engines) as counted:
        tuner.report_many(
            trial.trial_id, [(1, 0.5), (2, 0.4)], trial.lease, provenance=TrialProvenance(seed=7)
        )
    # Hyperband and no pruner: the reports' one transaction takes it; Optuna's general path
    # writes it in a transaction of its own, then each report.
    assert len(counted) == (1 if pruner["name"] != "median" else 1 + 2 * 2)
    [view] = tuner.study_trials(study.study_id)
    assert view.provenance == {"trainer": "mlp", "seed": 7}
    assert view.intermediate_values == {1: 0.5, 2: 0.4}


@pytest.mark.parametrize("state", [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL])
def test_a_completion_brings_provenance_in_its_transaction(
    tuner: Tuner, database: Database, state: TrialState
) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.record_provenance(trial.trial_id, TrialProvenance(seed=7), trial.lease)
    stated = TrialProvenance(dataset="digits", data_sha256=SHA)
    engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
    with writing_transactions(engines) as counted:
        value = None if state == TrialState.FAIL else 0.5  # a failed trial records none
        view = tuner.complete(
            trial.trial_id, state, value, "diverged", trial.lease, provenance=stated
        )
    assert len(counted) == 1  # the end, its lease's and the provenance: one transaction
    assert view.provenance == {"seed": 7, "dataset": "digits", "data_sha256": SHA}


def test_a_refused_completion_records_none_of_its_provenance(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    with pytest.raises(Conflict, match="lease"):
        tuner.complete(
            trial.trial_id,
            TrialState.COMPLETE,
            0.5,
            None,
            "another-holder",
            provenance=TrialProvenance(seed=7),
        )
    assert tuner.study_trials(study.study_id)[0].provenance is None


@pytest.mark.parametrize("pruner", [{"name": "hyperband"}, {"name": "median"}])
def test_refused_reports_record_none_of_their_provenance(
    tuner: Tuner, pruner: dict[str, Any]
) -> None:
    study = tuner.create_study(spec_with(pruner))
    trial = tuner.ask(study.study_id)
    with pytest.raises(Conflict, match="lease"):
        tuner.report_many(
            trial.trial_id, [(1, 0.5)], "another-holder", provenance=TrialProvenance(seed=7)
        )
    [view] = tuner.study_trials(study.study_id)
    assert view.provenance is None and view.intermediate_values == {}


def test_an_empty_statement_writes_nothing(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.report_many(trial.trial_id, [(1, 0.5)], trial.lease, provenance=TrialProvenance())
    assert tuner.study_trials(study.study_id)[0].provenance is None
