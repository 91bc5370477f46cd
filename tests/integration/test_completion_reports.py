"""A completion that brings the trial's last epochs' values (what the workers send at a trial's
end instead of a last batch of reports): recorded with it in one transaction, deciding nothing,
refused with nothing changed where they cannot be recorded. On SQLite and on PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import optuna
import pytest
import requests
from optuna.trial import TrialState

from cli.local_stack import LocalStack
from service.dispatch import NoDispatcher
from service.errors import InvalidSpec
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.transactions import writing_transactions

pytestmark = pytest.mark.integration

HYPERBAND = {"name": "hyperband", "min_resource": 1, "max_resource": 9, "reduction_factor": 3}


@pytest.fixture
def tuner(database: Database) -> Tuner:
    return Tuner(database, NoDispatcher(), TrainerCatalog.installed())


def spec(**extra: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"last-reports-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": -5, "high": 5}},
            "sampler": {"name": "random", "seed": 3},
            "budget": {"n_trials": 40, "max_concurrent_trials": 40},
            **extra,
        }
    )


def steps_of(tuner: Tuner, study_id: int, number: int = 0) -> dict[int, float]:
    return tuner.study_trials(study_id)[number].intermediate_values


def test_the_last_reports_are_recorded_with_the_completion_in_one_transaction(
    tuner: Tuner, database: Database, database_url: str
) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.report_many(trial.trial_id, [(1, 0.5), (2, 0.4)], trial.lease)
    engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
    with writing_transactions(engines) as counted:
        view = tuner.complete(
            trial.trial_id,
            TrialState.COMPLETE,
            0.3,
            None,
            trial.lease,
            last_reports=[(3, 0.35), (4, 0.3)],
        )
    assert len(counted) == 1
    assert view.state == "complete" and view.value == 0.3
    assert view.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.35, 4: 0.3}
    [stored] = optuna.load_study(study_name=study.name, storage=database_url).trials
    assert stored.intermediate_values == {1: 0.5, 2: 0.4, 3: 0.35, 4: 0.3}
    # A repeat (a duplicate delivery) is answered as the first and records nothing twice.
    again = tuner.complete(
        trial.trial_id, TrialState.COMPLETE, 0.3, None, last_reports=[(3, 0.35), (4, 0.3)]
    )
    assert again.state == "complete" and again.intermediate_values == view.intermediate_values


def test_under_hyperband_the_last_reports_decide_nothing(tuner: Tuner, database_url: str) -> None:
    study = tuner.create_study(spec(pruner=HYPERBAND))
    for _ in range(30):  # every bracket's rungs full of good values
        good = tuner.ask(study.study_id)
        tuner.report_many(good.trial_id, [(step, 0.1) for step in range(1, 10)], good.lease)
        tuner.complete(good.trial_id, TrialState.COMPLETE, 0.1, None, good.lease)
    bad = [(step, 50.0) for step in range(1, 10)]
    reported = tuner.ask(study.study_id)
    assert tuner.report_many(reported.trial_id, bad, reported.lease).prune is True
    brought = tuner.ask(study.study_id)
    view = tuner.complete(
        brought.trial_id, TrialState.COMPLETE, 50.0, None, brought.lease, last_reports=bad
    )
    assert view.state == "complete" and view.intermediate_values == dict(bad)
    # Nor do they complete a rung (Optuna's completed_rung_<n>): they are values, nothing more.
    stored = optuna.load_study(study_name=study.name, storage=database_url).trials
    rungs_of = [
        [key for key in t.system_attrs if key.startswith("completed_rung_")] for t in stored
    ]
    assert rungs_of[reported.number] and not rungs_of[brought.number]


def test_refused_last_reports_change_nothing(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.report_many(trial.trial_id, [(1, 0.5), (2, 0.4)], trial.lease)
    refusals: list[tuple[type[Exception], TrialState, list[tuple[int, float]], str]] = [
        (InvalidSpec, TrialState.COMPLETE, [(2, 0.3), (3, 0.2)], "reported step 2 already"),
        (InvalidSpec, TrialState.COMPLETE, [(4, 0.3), (3, 0.2)], "must rise"),
        (InvalidSpec, TrialState.COMPLETE, [(3, float("nan"))], "reports.0.value must be a finite"),
        (InvalidSpec, TrialState.FAIL, [(3, 0.2)], "only a complete trial"),
        (InvalidSpec, TrialState.PRUNED, [(3, 0.2)], "only a complete trial"),
    ]
    for error, state, reports, words in refusals:
        with pytest.raises(error, match=words) as refused:
            tuner.complete(trial.trial_id, state, 0.2, "why", trial.lease, last_reports=reports)
        assert (refused.value.field or "").startswith("reports")
        [view] = tuner.study_trials(study.study_id)
        assert view.state == "running" and view.intermediate_values == {1: 0.5, 2: 0.4}
    # A completion refused for its value, once its reports are written, rolls them back too.
    with pytest.raises(InvalidSpec, match="value"):
        tuner.complete(trial.trial_id, TrialState.COMPLETE, None, None, last_reports=[(3, 0.2)])
    assert steps_of(tuner, study.study_id) == {1: 0.5, 2: 0.4}
    tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.2, None, last_reports=[(3, 0.2)])
    assert steps_of(tuner, study.study_id) == {1: 0.5, 2: 0.4, 3: 0.2}


def test_over_http_a_completion_brings_its_reports_and_bad_ones_get_4xx_naming_the_field(
    stack: LocalStack,
) -> None:
    client = stack.client()
    study = client.create_study(
        {
            "name": f"last-reports-http-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": -5, "high": 5}},
            "budget": {"n_trials": 2},
        }
    )
    trial = client.ask(study["study_id"])
    url = f"{stack.url}/trials/{trial['trial_id']}/complete"
    bad_bodies: list[tuple[dict[str, Any], int, str]] = [
        ({"value": 0.2, "reports": [{"step": 1, "value": "NaN"}]}, 422, "reports.0.value"),
        (
            {"value": 0.2, "reports": [{"step": 2, "value": 0.1}, {"step": 1, "value": 0.1}]},
            422,
            "reports",
        ),
        ({"state": "failed", "reports": [{"step": 1, "value": 0.1}]}, 422, "reports"),
        ({"state": "failed", "reason": "diverged", "value": 0.2}, 422, "value"),
        ({"value": 0.2, "metrics": {"": 0.9}}, 422, "metrics"),  # the key is what is wrong
        ({"state": "failed", "reason": "diverged", "metrics": {"accuracy": 0.9}}, 422, "metrics"),
        ({"value": 0.2, "reports": [{"step": -1, "value": 0.1}]}, 422, "reports.0.step"),
        ({"value": 0.2, "provenance": {"seed": -1}}, 422, "provenance.seed"),
        ({"value": 0.2, "provenance": {"data_sha256": "not-hex"}}, 422, "provenance.data_sha256"),
    ]
    for body, status, field in bad_bodies:
        response = requests.post(url, json={**body, "lease": trial["lease"]}, timeout=10)
        assert response.status_code == status, response.text
        assert response.json()["problems"][0]["field"] == field
        [view] = client.trials(study["study_id"])
        assert view["state"] == "running" and view["intermediate_values"] == {}
        assert view["provenance"] is None
    done = client.complete(
        trial["trial_id"], value=0.2, lease=trial["lease"], reports=[(1, 0.3), (2, 0.2)]
    )
    assert done["state"] == "complete"
    assert {int(step): value for step, value in done["intermediate_values"].items()} == {
        1: 0.3,
        2: 0.2,
    }
