"""The study definition: what a client submits, as data (JSON over HTTP, YAML through the CLI).

The format is public: extend it, never rename a field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from service.preflight import PreflightSpec
from service.spec.objectives import (
    MAX_CONSTRAINTS,
    ConstraintSpec,
    Direction,
    Objectives,
    ObjectiveSpec,
    WarmStartSpec,
)
from service.spec.pruners import HyperbandPrunerSpec, PrunerSpec
from service.spec.samplers import SamplerSpec, TPESamplerSpec
from service.spec.space import CategoricalValue, Param
from service.spec.webhook import WebhookSpec

MAX_TRIALS = 100_000
MAX_CONCURRENT_TRIALS = 1024
MAX_PARAMETERS = 64
MAX_ENQUEUED = 1000
MAX_TRAINER_BYTES = 16 * 1024  # the trainer's settings, as JSON: free-form for unknown trainers

StudyName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
ParamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
TrainerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]


class BudgetSpec(BaseModel):
    """How many trials in all, how many at once, an optional wall-clock limit, how many times a
    trial whose worker was lost is run again with the same parameters, and an optional target:
    once a complete trial reaches it, no new trial starts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_trials: int = Field(default=20, ge=1, le=MAX_TRIALS)
    max_concurrent_trials: int = Field(default=4, ge=1, le=MAX_CONCURRENT_TRIALS)
    timeout_seconds: float | None = Field(default=None, gt=0, le=365 * 24 * 3600)
    max_retries: int = Field(default=2, ge=0, le=100)
    target_value: float | None = Field(default=None, allow_inf_nan=False)


class TrainerSpec(BaseModel):
    """The trainer to run (an installed entry point, by name) and its fixed settings."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: TrainerName

    @model_validator(mode="after")
    def _small(self) -> TrainerSpec:
        size = len(self.model_dump_json().encode())
        if size > MAX_TRAINER_BYTES:
            raise ValueError(
                f"the trainer and its settings take {size} bytes as JSON, "
                f"more than the limit of {MAX_TRAINER_BYTES}"
            )
        return self

    def settings(self) -> dict[str, Any]:
        """The fixed settings: every field but ``name``."""
        return dict(self.model_extra or {})


class StudySpec(BaseModel):
    """A whole study: search space, sampler, pruner, budget and trainer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StudyName
    direction: Literal["minimize", "maximize"] = "minimize"
    metric: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "validation_loss"
    space: dict[ParamName, Param] = Field(min_length=1, max_length=MAX_PARAMETERS)
    sampler: SamplerSpec = Field(default_factory=TPESamplerSpec)
    pruner: PrunerSpec = Field(default_factory=HyperbandPrunerSpec)
    budget: BudgetSpec = Field(default_factory=BudgetSpec)
    trainer: TrainerSpec | None = None
    enqueue: list[dict[ParamName, CategoricalValue]] = Field(
        default_factory=list,
        max_length=MAX_ENQUEUED,
        description="Known configurations to run first (a parameter left out is sampled).",
    )
    objectives: Objectives = None
    constraints: list[ConstraintSpec] = Field(default_factory=list, max_length=MAX_CONSTRAINTS)
    warm_start: WarmStartSpec | None = None
    preflight: PreflightSpec | None = None
    webhook: WebhookSpec | None = None

    def objective_list(self) -> list[ObjectiveSpec]:
        """The study's objectives, in order: ``objectives``, or the one of direction and metric."""
        if self.objectives is not None:
            return list(self.objectives)
        return [ObjectiveSpec(metric=self.metric, direction=self.direction)]

    def directions(self) -> list[Direction]:
        """Each objective's direction, in order."""
        return [objective.direction for objective in self.objective_list()]

    @property
    def multi_objective(self) -> bool:
        """Whether the study has several objectives (a Pareto front, no single best)."""
        return self.objectives is not None

    def figures_needed(self) -> list[str]:
        """The figures a trial must report when it completes: several objectives' and the
        constraints' (a single objective is the completion's ``value``)."""
        names = [o.metric for o in self.objectives] if self.objectives is not None else []
        names += [c.metric for c in self.constraints]
        return list(dict.fromkeys(names))
