"""Typed answers of the HPO service's HTTP API, as a client sees them.

They mirror the service's read models (``StudyView``, ``TrialView``, ``BestView``, the ask
answer, the importances) without importing the service: a program that calls the API installs
only the client. Fields the API adds later are ignored, so an older client keeps working.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FINISHED_TRIAL_STATES = ("complete", "pruned", "fail")
ENDED_STUDY_STATES = ("complete", "stopped")


class ApiModel(BaseModel):
    """Base of every answer: unknown fields are ignored, values are not changed after parsing."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Objective(ApiModel):
    """One figure a study optimises and its direction."""

    metric: str
    direction: str


class Best(ApiModel):
    """The best finished trial of a study: ``GET /studies/{id}/best``."""

    study_id: int
    trial_id: int
    number: int
    value: float
    params: dict[str, Any]
    copied_from: int | None = None  # a warm start's copy: the earlier study's trial


class Trial(ApiModel):
    """One trial: parameters, state, value and the value reported after every epoch."""

    trial_id: int
    number: int
    state: str
    params: dict[str, Any]
    value: float | None = None
    values: list[float] | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    intermediate_values: dict[int, float] = Field(default_factory=dict)
    last_step: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    fail_reason: str | None = None
    seed: int | None = None
    constraints: dict[str, float] = Field(default_factory=dict)
    feasible: bool = True
    retried_by: int | None = None
    copied_from: int | None = None  # a warm start's copy: the earlier study's trial
    provenance: dict[str, Any] | None = None  # where its result comes from (data, code, seed…)
    epoch_metrics: list[dict[str, float | None]] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Complete, pruned or failed: it will not change any more."""
        return self.state in FINISHED_TRIAL_STATES


class Study(ApiModel):
    """A study's state, its trials counted by state, its best so far and its definition."""

    study_id: int
    name: str
    state: str
    direction: str
    metric: str
    objectives: list[Objective] = Field(default_factory=list)
    n_trials: int
    counts: dict[str, int]
    best: Best | None = None
    created_at: datetime
    finished_at: datetime | None = None
    spec: dict[str, Any]
    urls: dict[str, str]
    # The pre-flight checks (state, each check's outcome, whether they held the study) and the
    # warm start's copy, where the study has them.
    preflight: dict[str, Any] | None = None
    warm_start: dict[str, Any] | None = None

    @property
    def ended(self) -> bool:
        """Complete or stopped: no trial will start any more."""
        return self.state in ENDED_STUDY_STATES

    @property
    def n_finished(self) -> int:
        """Trials complete, pruned or failed."""
        return sum(self.counts.get(state, 0) for state in FINISHED_TRIAL_STATES)


class Pareto(ApiModel):
    """A study of several objectives' Pareto front (``GET /studies/{id}/pareto``): the feasible
    complete trials no other beats on every objective."""

    study_id: int
    objectives: list[Objective]
    trials: list[Trial]


class Assignment(ApiModel):
    """A trial the service started for the asker (``POST /studies/{id}/trials``): its ids, the
    parameters to train with, and the lease that its reports and completion carry."""

    study_id: int
    trial_id: int
    number: int
    params: dict[str, Any]
    trainer: dict[str, Any] | None = None
    seed: int
    lease: str | None = None
    lease_ttl_s: float | None = None  # report or heartbeat at least this often (None: older API)


class Importance(ApiModel):
    """Parameter importances of a study's complete trials (``GET /studies/{id}/importance``)."""

    study_id: int
    evaluator: str
    n_complete_trials: int
    importances: dict[str, float]
