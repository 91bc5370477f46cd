"""The small interface every trainer implements, built-in or installed from a user's package.

A trainer receives the trial's parameters and fixed settings, trains, and after every epoch
calls ``report(epoch, validation_value)``; a ``True`` answer means "stop now" (pruned or
stopped by the service), and the trainer returns at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class TrialRun:
    """Everything a trainer needs about one trial. Plain data, built from the task message."""

    study_id: int
    trial_id: int
    number: int
    params: dict[str, Any]
    settings: dict[str, Any]
    seed: int


@dataclass(frozen=True)
class TrainResult:
    """What a trainer returns: the objective value, or why there is none."""

    value: float
    epochs_run: int
    pruned: bool = False
    # Named results beside the value (e.g. n_parameters, validation_accuracy): a study's
    # objectives and constraints take their figures from here.
    metrics: dict[str, float] = field(default_factory=dict)
    # One record per epoch run (e.g. train_loss, validation_loss, grad_norm, lr): sent with the
    # completion, kept on the trial, and read by the study's over/under-fitting diagnosis.
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)


class TrainingFailed(ValueError):
    """Training cannot go on (a NaN, infinite or exploding loss): the trial fails with ``reason``,
    and the epochs recorded until then go with it."""

    def __init__(self, reason: str, epoch_metrics: list[dict[str, float]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.epoch_metrics = list(epoch_metrics or [])


class EpochReporter(Protocol):
    """Called once per epoch with the validation figure; ``True`` means stop the trial now."""

    def __call__(self, epoch: int, value: float, /) -> bool: ...


class Trainer(Protocol):
    """What the ``hpo.trainers`` entry point must load: a class built with no arguments."""

    def train(self, run: TrialRun, report: EpochReporter) -> TrainResult: ...
