"""Learning-rate schedules, stepped once per epoch (``t`` counts the epochs finished).

constant: lr0; step: lr0·gamma^floor(t/n); exponential: lr0·e^(-kt); inverse_time: lr0/(1+kt);
plateau: multiply by ``plateau_factor`` after ``plateau_patience`` epochs without a better
validation loss; cosine: lr0·(1+cos(pit/T))/2 over the ``T`` epochs of the run.
"""

from __future__ import annotations

import math

import torch
from torch.optim import lr_scheduler

from service.trainer_catalog import MLPParameters


class EpochSchedule:
    """Sets the optimizer's learning rate for each epoch; ``step`` after every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, hp: MLPParameters, epochs: int) -> None:
        self._optimizer = optimizer
        self._plateau: lr_scheduler.ReduceLROnPlateau | None = None
        self._scheduler: lr_scheduler.LRScheduler | None = None
        if hp.schedule == "plateau":
            self._plateau = lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", factor=hp.plateau_factor, patience=hp.plateau_patience
            )
        elif hp.schedule != "constant":
            self._scheduler = _epoch_scheduler(optimizer, hp, epochs)

    @property
    def lr(self) -> float:
        """The learning rate the next epoch trains with."""
        return float(self._optimizer.param_groups[0]["lr"])

    def step(self, validation_loss: float) -> None:
        """One epoch is over: move to the next epoch's learning rate."""
        if self._plateau is not None:
            self._plateau.step(validation_loss)
        elif self._scheduler is not None:
            self._scheduler.step()


def _epoch_scheduler(
    optimizer: torch.optim.Optimizer, hp: MLPParameters, epochs: int
) -> lr_scheduler.LRScheduler:
    if hp.schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=hp.step_size, gamma=hp.step_gamma)
    if hp.schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    k = hp.decay_rate
    if hp.schedule == "exponential":
        return lr_scheduler.LambdaLR(optimizer, lambda t: math.exp(-k * t))
    if hp.schedule == "inverse_time":
        return lr_scheduler.LambdaLR(optimizer, lambda t: 1.0 / (1.0 + k * t))
    raise ValueError(f"unknown schedule {hp.schedule!r}")
