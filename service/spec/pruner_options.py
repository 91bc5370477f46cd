"""The pruners a study can choose besides Hyperband and none, as data; ``pruners`` joins them all.

Steps are what a trial reports: the trainers report epochs 1, 2, ...; an external program any
step from 0 on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

MAX_STEP = 10**9  # as the API's report accepts
MAX_STARTUP_TRIALS = 100_000
MAX_MAGNITUDE = 1e100

Steps = Annotated[int, Field(ge=0, le=MAX_STEP)]
Interval = Annotated[int, Field(ge=1, le=MAX_STEP)]
StartupTrials = Annotated[int, Field(ge=0, le=MAX_STARTUP_TRIALS)]
Bound = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]


class PrunerSpecBase(BaseModel):
    """What every pruner spec shares: no unknown fields, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class _ComparedToOthers(PrunerSpecBase):
    """Nothing is pruned before ``n_startup_trials`` trials complete, nor before step
    ``n_warmup_steps``; a trial is checked every ``interval_steps`` steps, and only at a step that
    ``n_min_trials`` complete trials reported."""

    n_startup_trials: StartupTrials = 5
    n_warmup_steps: Steps = 0
    interval_steps: Interval = 1
    n_min_trials: Annotated[int, Field(ge=1, le=MAX_STARTUP_TRIALS)] = 1


class MedianPrunerSpec(_ComparedToOthers):
    """Prune a trial whose best value so far is worse than the median of the complete trials'
    values at the same step."""

    name: Literal["median"]


class PercentilePrunerSpec(_ComparedToOthers):
    """As ``median``, at the given ``percentile`` (required) instead of 50: 25 keeps only trials
    in the best quarter, 75 prunes only the worst quarter."""

    name: Literal["percentile"]
    percentile: float = Field(ge=0, le=100, allow_inf_nan=False)


class SuccessiveHalvingPrunerSpec(PrunerSpecBase):
    """Asynchronous successive halving (ASHA): at steps ``min_resource * reduction_factor **
    (min_early_stopping_rate + rung)`` a trial goes on only if it is in the best
    ``1 / reduction_factor`` of the trials that reached that rung."""

    name: Literal["successive_halving"]
    min_resource: Annotated[int, Field(ge=1, le=MAX_STEP)] = 1
    reduction_factor: Annotated[int, Field(ge=2, le=100)] = 4
    min_early_stopping_rate: Annotated[int, Field(ge=0, le=30)] = 0


class ThresholdPrunerSpec(PrunerSpecBase):
    """Prune a trial whose value leaves [``lower``, ``upper``] (either may be left out, not both),
    from step ``n_warmup_steps`` on, every ``interval_steps`` steps."""

    name: Literal["threshold"]
    lower: Bound | None = None
    upper: Bound | None = Field(default=None, validate_default=True)
    n_warmup_steps: Steps = 0
    interval_steps: Interval = 1

    @field_validator("upper")
    @classmethod
    def _some_bound_in_order(cls, upper: float | None, info: ValidationInfo) -> float | None:
        if "lower" not in info.data:  # lower itself was invalid: that is the problem to tell
            return upper
        lower = info.data["lower"]
        if lower is None and upper is None:
            raise ValueError("give lower, upper or both")
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"upper ({upper}) must not be below lower ({lower})")
        return upper


class WilcoxonPrunerSpec(PrunerSpecBase):
    """Prune a trial that a one-sided Wilcoxon signed-rank test finds worse than the best complete
    trial, step for step (the steps are paired by number), at p below ``p_threshold``.

    Made for steps that are separate evaluations (folds, problem instances) rather than epochs;
    no trial is pruned before ``n_startup_steps`` (and at least 2) paired steps.
    """

    name: Literal["wilcoxon"]
    p_threshold: float = Field(default=0.1, ge=0, le=1, allow_inf_nan=False)
    n_startup_steps: Steps = 2


WrappablePrunerSpec = Annotated[
    MedianPrunerSpec
    | PercentilePrunerSpec
    | SuccessiveHalvingPrunerSpec
    | ThresholdPrunerSpec
    | WilcoxonPrunerSpec,
    Field(discriminator="name"),
]
"""The pruners ``patient`` may wrap: neither ``hyperband`` (its brackets steer the sampler only
when it is the study's own pruner) nor ``patient`` itself."""


class PatientPrunerSpec(PrunerSpecBase):
    """Prune a trial whose best value over its last ``patience + 1`` reported steps is worse than
    its best before them by more than ``min_delta``; with ``wrapped``, only if that pruner also
    says prune. A plateau (equal values) is not pruned; ``min_delta`` tolerates a worsening.

    With patience ``p`` the earliest prune is at the trial's ``p + 2``-th reported step.
    """

    name: Literal["patient"]
    patience: Annotated[int, Field(ge=0, le=MAX_STEP)]
    min_delta: float = Field(default=0.0, ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)
    wrapped: WrappablePrunerSpec | None = None
