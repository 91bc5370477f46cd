"""Which trials a study's ``best_changed`` tells, read when the event goes out, and the outcome
each event's delivery is counted under."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial

from service import webhooks
from service.constraints import constraint_attr
from service.spec.study_spec import StudySpec
from service.webhooks import Delivery, WebhookSender, _became_best

URL = "http://127.0.0.1:9/hook"  # discard: nothing listens there


class LastOfTiesStorage(optuna.storages.InMemoryStorage):
    """Names the last of several equal bests, as PostgreSQL may (its query has no order among
    them; Optuna's in-memory storage names the first)."""

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        complete = self.get_all_trials(study_id, states=(optuna.trial.TrialState.COMPLETE,))
        lowest = min(trial.values[0] for trial in complete)
        return [trial for trial in complete if trial.values[0] == lowest][-1]


def study_of(
    values: list[float], infeasible: set[int] = frozenset()
) -> tuple[optuna.Study, StudySpec]:
    """A study whose trials finished in the order given, with those values (the ``infeasible``
    indexes outside its constraint)."""
    fields: dict[str, Any] = {"name": "s", "space": {"x": {"type": "float", "low": 0, "high": 1}}}
    if infeasible:
        fields["constraints"] = [{"metric": "size", "max": 1}]
    spec = StudySpec.model_validate(fields)
    study = optuna.create_study(study_name="s", storage=LastOfTiesStorage())
    for index, value in enumerate(values):
        violation = {constraint_attr("size<=1"): 1.0 if index in infeasible else -1.0}
        study.add_trial(
            optuna.trial.create_trial(
                value=value,
                params={"x": 0.5},
                distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                system_attrs=violation if infeasible else {},
            )
        )
    return study, spec


def told(study: optuna.Study, spec: StudySpec) -> list[int]:
    """The numbers of the trials a best_changed is sent for, each read after all have ended."""
    trials: list[FrozenTrial] = study.trials
    return [
        trial.number
        for trial in trials
        if _became_best(study._storage, spec, study._study_id, trial._trial_id) is not None
    ]


def test_each_best_is_told_though_a_later_one_beat_it_before_its_event_went_out() -> None:
    study, spec = study_of([0.5, 0.7, 0.3, 0.4, 0.1])
    assert told(study, spec) == [0, 2, 4]


def test_a_trial_that_only_ties_an_earlier_best_is_not_told() -> None:
    """The database names one of several equal bests: the later of two ties was told."""
    study, spec = study_of([0.5, 0.5, 0.5])
    assert told(study, spec) == [0]


def test_a_trial_outside_the_constraints_is_never_told_nor_counts_as_a_best() -> None:
    study, spec = study_of([0.5, 0.1, 0.4], infeasible={1})
    assert told(study, spec) == [0, 2]


def outcomes_of(sender: WebhookSender, url: str) -> list[str]:
    seen: list[str] = []
    sender.on_outcome = lambda event, outcome: seen.append(f"{event}:{outcome}")
    sender._deliver(Delivery(url, "s" * 16, "study_finished", lambda: {"study_id": 1}))
    return seen


def test_a_refused_address_and_a_receiver_never_reached_are_counted_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhooks, "RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    sender = WebhookSender()
    assert outcomes_of(sender, URL) == ["study_finished:refused"]  # loopback, not allowed
    sender.allow_private = True
    assert outcomes_of(sender, URL) == ["study_finished:given_up"]  # allowed, nobody listens


def test_a_key_error_of_another_kind_is_a_failure_not_a_deleted_study() -> None:
    """Every KeyError was read as Optuna's "Record does not exist.": a bug hid as a deletion."""
    sender = WebhookSender()
    seen: list[str] = []
    sender.on_outcome = lambda event, outcome: seen.append(outcome)

    def broken() -> dict[str, Any]:
        raise KeyError("best")

    sender._deliver_logged(Delivery(URL, "s" * 16, "study_finished", broken))
    assert seen == ["given_up"]


def test_of_two_ties_finished_at_one_time_the_lower_number_is_told() -> None:
    """Each counted the other as finished before it: neither was told."""
    study, spec = study_of([])
    at = datetime.now(UTC)
    for number in (0, 1):
        study.add_trial(
            FrozenTrial(
                number=number,
                state=optuna.trial.TrialState.COMPLETE,
                value=0.5,
                datetime_start=at,
                datetime_complete=at,
                params={},
                distributions={},
                user_attrs={},
                system_attrs={},
                intermediate_values={},
                trial_id=number,
            )
        )
    assert told(study, spec) == [0]
