"""What a trainer hands back, as the API takes it: plain, finite floats.

A trainer's numbers are often not Python floats (``numpy.float32``, a 0-d ``torch.Tensor``) and
sometimes not finite (a diverged loss, a skipped mixed-precision step's gradient norm). The
client's JSON refuses both before a request leaves, so every number goes through ``float()``
here first. A figure that can decide the trial (its value, a named result an objective or a
constraint may read) and is not finite fails the trial with a reason saying so; an epoch
record's figure that is not finite goes as ``null``, which the API keeps as "not measured".
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from typing import Any

from service.epoch_metrics import MAX_EPOCH_RECORDS
from workers.trainers.base import TrainingFailed, TrainResult

EpochFigures = dict[str, float | None]


def as_float(value: Any, what: str) -> float:
    """``value`` as a Python float (``TypeError`` naming ``what`` if it is no number)."""
    try:
        return float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} must be a number, got {value!r}") from error


def as_step(step: Any) -> int:
    """A report's epoch as a Python int (``numpy.int64`` and a whole float such as ``2.0`` too)."""
    try:
        return operator.index(step)
    except TypeError:
        number = as_float(step, "a report's epoch")
    if not number.is_integer():
        raise TypeError(f"a report's epoch must be a whole number, got {step!r}")
    return int(number)


def not_finite_reason(value: float, what: str) -> str | None:
    """Why ``value`` cannot decide the trial (``None``: it is finite)."""
    return None if math.isfinite(value) else f"{what} is {value}"


def epoch_records(records: Any) -> list[EpochFigures]:
    """A trainer's per-epoch records (at most ``MAX_EPOCH_RECORDS``) with every figure a float,
    or ``None`` where it is not a finite number."""
    return [_epoch_figures(record) for record in list(records or [])[:MAX_EPOCH_RECORDS]]


def completion_fields(result: TrainResult) -> dict[str, Any]:
    """The completion's ``value``, ``metrics`` and ``epoch_metrics`` for ``result``.

    ``TrainingFailed`` (with the trainer's epoch records) where the value or a named result is not finite:
    a named result may be the study's objective, and one left out would let the service fall
    back on ``value`` in its place."""
    value = as_float(result.value, "the trainer's value")
    metrics = {
        str(name): as_float(figure, f"the trainer's metric {name!r}")
        for name, figure in dict(result.metrics or {}).items()
    }
    problems = [not_finite_reason(value, "the trainer's value (the study's objective)")]
    problems += [not_finite_reason(f, f"the trainer's metric {n!r}") for n, f in metrics.items()]
    found = [problem for problem in problems if problem is not None]
    if found:
        raise TrainingFailed("; ".join(found), list(result.epoch_metrics or []))
    return {
        "value": value,
        "metrics": metrics,
        "epoch_metrics": epoch_records(result.epoch_metrics),
    }


def _epoch_figures(record: Any) -> EpochFigures:
    if not isinstance(record, Mapping):
        return {}
    return {str(name): _finite_or_none(figure) for name, figure in record.items()}


def _finite_or_none(figure: Any) -> float | None:
    try:
        number = float(figure)
    except Exception:  # an auxiliary figure: whatever float() makes of it, it is not measured
        return None
    return number if math.isfinite(number) else None
