"""What the service shows of studies and trials: plain read models, serialised by the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from optuna.trial import FrozenTrial
from pydantic import BaseModel, Field

from service.constraints import FIGURES_ATTR, is_feasible
from service.epoch_metrics import Diagnosis, EpochRecord, diagnose, epoch_metrics_of
from service.preflight import PreflightView
from service.spec.objectives import ObjectiveSpec
from service.spec.study_spec import StudySpec
from service.storage.tables import StudyRecord
from service.trial_counts import COPIED_FROM_ATTR, RETRIED_BY_ATTR
from service.trial_provenance import PROVENANCE_ATTR
from service.warm_start import WarmStartView


class TrialView(BaseModel):
    """One trial: its parameters, state, value and the value reported after every epoch."""

    trial_id: int
    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    values: list[float] | None
    metrics: dict[str, float]
    constraints: dict[str, float]
    feasible: bool
    intermediate_values: dict[int, float]
    last_step: int | None
    started_at: datetime | None
    finished_at: datetime | None
    fail_reason: str | None
    seed: int | None
    retried_by: int | None
    copied_from: int | None = Field(
        default=None,
        description="a warm start's copy: the id of the earlier study's trial it copies "
        "(no checkpoint, no provenance: it ran there)",
    )
    # seed, trainer package + version, data SHA-256, split (service/trial_provenance.py)
    provenance: dict[str, Any] | None = None
    # One record per epoch (training and validation loss, gradient norm, ...), from the trainer.
    epoch_metrics: list[EpochRecord] = []


class BestView(BaseModel):
    """The best finished trial of a study."""

    study_id: int
    trial_id: int
    number: int
    value: float
    params: dict[str, Any]
    copied_from: int | None = Field(
        default=None, description="the earlier study's trial, where the best is a warm start's copy"
    )
    # Over- or under-fitting, read from the trial's per-epoch training and validation losses.
    diagnosis: Diagnosis | None = None


class ParetoView(BaseModel):
    """The trials no other (feasible) trial beats on every objective: a study's Pareto front."""

    study_id: int
    objectives: list[ObjectiveSpec]
    trials: list[TrialView]


class StudyView(BaseModel):
    """A study's state, its trials counted by state, its best so far and its definition."""

    study_id: int
    name: str
    state: str
    direction: str
    metric: str
    objectives: list[ObjectiveSpec]
    n_trials: int
    counts: dict[str, int] = Field(
        description="Trials by state (Optuna's, lower case), and retried, copied and queued: "
        "retried counts the failed runs another took the place of (their retry, a fresh trial "
        "after a pause or an outage) and retries not needed after all, not under fail; queued "
        "counts the running trials that wait for "
        "a worker (sent, not claimed yet)"
    )
    best: BestView | None
    created_at: datetime
    finished_at: datetime | None
    spec: StudySpec
    urls: dict[str, str]
    warm_start: WarmStartView | None = None
    preflight: PreflightView | None = None


def trial_view(trial: FrozenTrial, fail_reason_attr: str, seed_attr: str) -> TrialView:
    """The read model of an Optuna trial."""
    attrs = trial.system_attrs
    return TrialView(
        trial_id=trial._trial_id,
        number=trial.number,
        state=trial.state.name.lower(),
        params=trial.params,
        value=trial.values[0] if trial.values is not None and len(trial.values) == 1 else None,
        values=trial.values,
        metrics=attrs.get(FIGURES_ATTR, {}),
        constraints=trial.constraints,
        feasible=is_feasible(trial),
        intermediate_values=dict(sorted(trial.intermediate_values.items())),
        last_step=trial.last_step,
        started_at=optuna_time(trial.datetime_start),
        finished_at=optuna_time(trial.datetime_complete),
        fail_reason=attrs.get(fail_reason_attr),
        seed=attrs.get(seed_attr),
        retried_by=attrs.get(RETRIED_BY_ATTR),
        copied_from=attrs.get(COPIED_FROM_ATTR),
        provenance=attrs.get(PROVENANCE_ATTR),
        epoch_metrics=epoch_metrics_of(trial),
    )


def best_view(study_id: int, trial: FrozenTrial) -> BestView:
    """The read model of a study's best trial."""
    assert trial.value is not None
    return BestView(
        study_id=study_id,
        trial_id=trial._trial_id,
        number=trial.number,
        value=trial.value,
        params=trial.params,
        copied_from=trial.system_attrs.get(COPIED_FROM_ATTR),
        diagnosis=diagnose(trial),
    )


def study_urls(study_id: int) -> dict[str, str]:
    """Where a client finds the study's resources."""
    base = f"/studies/{study_id}"
    return {
        "self": base,
        "trials": f"{base}/trials",
        "best": f"{base}/best",
        "pareto": f"{base}/pareto",
        "stop": f"{base}/stop",
    }


def study_view(
    record: StudyRecord, spec: StudySpec, counts: dict[str, int], best: BestView | None
) -> StudyView:
    """The read model of a study."""
    return StudyView(
        study_id=record.study_id,
        name=record.study_name,
        state=record.state,
        direction=spec.direction,
        metric=spec.metric,
        objectives=spec.objective_list(),
        n_trials=spec.budget.n_trials,
        counts=counts,
        best=best,
        created_at=service_time(record.created_at) or record.created_at,
        finished_at=service_time(record.finished_at),
        spec=spec,
        urls=study_urls(record.study_id),
    )


def optuna_time(moment: datetime | None) -> datetime | None:
    """An Optuna timestamp (naive, the machine's local time) as an aware UTC time."""
    return moment.astimezone(UTC) if moment is not None else None


def service_time(moment: datetime | None) -> datetime | None:
    """A timestamp of the service's tables (UTC; SQLite hands it back naive) as an aware time."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
