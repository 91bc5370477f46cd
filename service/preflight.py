"""Pre-flight sanity checks of a study: what a study asks for, and what the worker found.

The checks (run once, on a worker, before the study's first trial; ``workers/preflight.py``):
the untrained model's loss against ln(C) over several seeds, overfitting a tiny subset with
regularisation off, and analytic against numeric gradients in float64. Plain data here: the
service stores and shows the result, and holds the trials back while it waits, where asked to.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from service.spec.space import CategoricalValue

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

MAX_CHECKS = 16
MAX_FIGURES = 32
# Why a job never ran; a held study whose checks never ran starts its trials: only a check that
# ran and failed, or could not run on the model, refuses it.
JOB_TIMED_OUT = "timed out"
JOB_NOT_SENT = "could not be sent to the workers"
NEVER_RAN = (JOB_TIMED_OUT, JOB_NOT_SENT)


class PreflightSpec(BaseModel):
    """Part of the study definition: whether to run the pre-flight checks, and what a failure does.

    ``enabled`` left out means: on for the built-in trainers, off for the others.
    ``refuse_on_failure``: the trials wait for the checks, and a failed check stops the study
    before its first trial; otherwise the trials start at once and the checks run beside them.
    ``params``: hyperparameters of the checked model (the trainer's defaults for the rest).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    refuse_on_failure: bool = False
    seeds: int = Field(default=3, ge=1, le=10)
    overfit_samples: int = Field(default=10, ge=5, le=20)
    params: dict[str, CategoricalValue] = Field(default_factory=dict, max_length=64)

    @field_validator("refuse_on_failure")
    @classmethod
    def _refusal_needs_the_checks(cls, refuse: bool, info: ValidationInfo) -> bool:
        if refuse and info.data.get("enabled") is False:  # enabled: validated before
            raise ValueError("needs the checks, which enabled: false turns off")
        return refuse


class CheckOutcome(BaseModel):
    """One check: whether it passed, its figures, and a sentence saying what they mean."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    passed: bool
    # Finite: a JSON answer holds no NaN or infinity (the worker sends those as 1e308).
    figures: dict[str, FiniteFloat | int | list[FiniteFloat]] = Field(
        default_factory=dict, max_length=MAX_FIGURES
    )
    message: str = Field(default="", max_length=1000)


class PreflightReport(BaseModel):
    """What a worker sends back: every check's outcome."""

    model_config = ConfigDict(extra="forbid")

    checks: list[CheckOutcome] = Field(max_length=MAX_CHECKS)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(check.passed for check in self.checks)


class PreflightState(enum.StrEnum):
    """Where a study's pre-flight checks are."""

    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"  # the checks could not run (the worker said why)
    TIMED_OUT = "timed_out"  # never ran (no worker in time, or no broker): the trials start anyway


class PreflightView(BaseModel):
    """A study's pre-flight checks as ``GET /studies/{id}`` shows them."""

    state: PreflightState
    refuse_on_failure: bool
    refused: bool = False
    job_id: int
    checks: list[CheckOutcome] = Field(default_factory=list)
    reason: str | None = None


def preflight_view(
    job_id: int, spec: PreflightSpec, state: str, result: dict[str, Any] | None, reason: str | None
) -> PreflightView:
    """The view of a pre-flight job from its stored state and result."""
    report = PreflightReport.model_validate(result) if result is not None else None
    if state == "done" and report is not None:
        shown = PreflightState.PASSED if report.passed else PreflightState.FAILED
    elif state in ("queued", "running"):
        shown = PreflightState.RUNNING
    elif reason is not None and reason.startswith(NEVER_RAN):
        shown = PreflightState.TIMED_OUT
    else:
        shown = PreflightState.ERROR
    return PreflightView(
        state=shown,
        refuse_on_failure=spec.refuse_on_failure,
        refused=spec.refuse_on_failure and shown in (PreflightState.FAILED, PreflightState.ERROR),
        job_id=job_id,
        checks=report.checks if report is not None else [],
        reason=reason or _failed_checks(report),
    )


def _failed_checks(report: PreflightReport | None) -> str | None:
    """A failed report's reason: the checks that failed (each says why in its message)."""
    failed = [check.name for check in report.checks if not check.passed] if report else []
    return f"checks that failed: {', '.join(failed)}" if failed else None
