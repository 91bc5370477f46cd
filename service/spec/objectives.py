"""What a study optimises beyond one figure: several objectives, constraints, and a warm start.

A study has one objective (``direction`` and ``metric``) or several (``objectives``); either way
the trainer reports its figures by name when a trial completes, and the service takes each
objective's and each constraint's value from them.
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator

from service.ids import MAX_ID

MAX_OBJECTIVES = 8
MAX_CONSTRAINTS = 16
MAX_STUDY_ID = MAX_ID

MetricName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Direction = Literal["minimize", "maximize"]


class ObjectiveSpec(BaseModel):
    """One figure to optimise: a name the trainer reports at completion, and its direction."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: MetricName
    direction: Direction = "minimize"


class ConstraintSpec(BaseModel):
    """A bound on a figure the trainer reports at completion (e.g. ``n_parameters`` ≤ 5000).

    A trial outside a bound is infeasible: the sampler is told, and ``best`` and the Pareto front
    leave it out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: MetricName
    max: float | None = Field(default=None, allow_inf_nan=False)
    min: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _bounded(self) -> ConstraintSpec:
        if self.max is None and self.min is None:
            raise ValueError("a constraint needs max, min or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    def violations(self, figure: float) -> dict[str, float]:
        """Optuna's convention: one number per bound, named by it, ≤ 0 where the bound holds."""
        found = {}
        if self.max is not None:
            found[f"{self.metric}<={_bound_text(self.max)}"] = _finite(figure - self.max)
        if self.min is not None:
            found[f"{self.metric}>={_bound_text(self.min)}"] = _finite(self.min - figure)
        return found


class WarmStartSpec(BaseModel):
    """Start from an earlier study of the same tenant: its finished trials are copied in first,
    where its space agrees with this one; they teach the sampler and do not count in the budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_id: int = Field(ge=1, le=MAX_STUDY_ID)
    include_pruned: StrictBool = Field(
        default=True, description="Copy pruned trials too (with their intermediate values)."
    )


Objectives = Annotated[
    list[ObjectiveSpec] | None,
    Field(
        default=None,
        min_length=2,
        max_length=MAX_OBJECTIVES,
        description="Several objectives (instead of direction and metric): a multi-objective "
        "study, whose result is a Pareto front.",
    ),
]


def _finite(difference: float) -> float:
    """A difference of two finite floats that overflowed, as the largest float of its sign (its
    sign is what a constraint reads; a JSON answer holds no infinity)."""
    return max(-sys.float_info.max, min(sys.float_info.max, difference))


def _bound_text(bound: float) -> str:
    """A bound as a constraint's name shows it: short (``5000``, ``0.2``), and exact, so that two
    bounds on one figure never share a name (``1`` and ``1.0000001``)."""
    short = f"{bound:g}"
    return short if float(short) == bound else repr(bound)
