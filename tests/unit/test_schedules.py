"""Each learning-rate schedule sets the learning rate of epoch t (t = epochs finished) as its
formula says."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch

from service.trainer_catalog import MLPParameters
from workers.trainers.schedules import EpochSchedule

LR0 = 0.1
EPOCHS = 8


def lrs_per_epoch(
    params: dict[str, Any], losses: list[float] | None = None, epochs: int = EPOCHS
) -> list[float]:
    """The learning rate each epoch trains with, stepping with ``losses`` as validation losses."""
    hp = MLPParameters.from_params({"lr": LR0, "optimizer": "sgd", **params})
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=hp.lr)
    schedule = EpochSchedule(optimizer, hp, epochs)
    seen = []
    for t in range(epochs):
        seen.append(schedule.lr)
        optimizer.step()  # an epoch of training (no gradient: the weight stays)
        schedule.step(losses[t] if losses else 1.0)
    return seen


FORMULAS: dict[str, tuple[dict[str, Any], Callable[[int], float]]] = {
    "constant": ({}, lambda t: LR0),
    "step": ({"step_size": 3, "step_gamma": 0.5}, lambda t: LR0 * 0.5 ** (t // 3)),
    "exponential": ({"decay_rate": 0.3}, lambda t: LR0 * math.exp(-0.3 * t)),
    "inverse_time": ({"decay_rate": 0.5}, lambda t: LR0 / (1 + 0.5 * t)),
    "cosine": ({}, lambda t: LR0 * (1 + math.cos(math.pi * t / EPOCHS)) / 2),
}


@pytest.mark.parametrize("schedule", sorted(FORMULAS))
def test_schedule_follows_its_formula_epoch_by_epoch(schedule: str) -> None:
    params, formula = FORMULAS[schedule]
    seen = lrs_per_epoch({"schedule": schedule, **params})
    assert seen == pytest.approx([formula(t) for t in range(EPOCHS)], rel=1e-9)
    if schedule != "constant":
        assert seen[-1] < seen[0]  # the check has teeth: the rate did move


def test_plateau_cuts_the_rate_only_after_patience_epochs_without_improvement() -> None:
    losses = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8]
    seen = lrs_per_epoch(
        {"schedule": "plateau", "plateau_factor": 0.5, "plateau_patience": 2}, losses
    )
    # epochs 3 and 4 do not improve on 0.9; after the third such epoch (patience 2 exceeded)
    # the rate halves; 0.8 improves, then two more flat epochs are within patience.
    assert seen == pytest.approx([LR0, LR0, LR0, LR0, LR0, LR0 / 2, LR0 / 2, LR0 / 2])
