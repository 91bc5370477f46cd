"""The pre-flight checks catch what they are for: a wrong gradient, a model that cannot learn."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from workers.job_models import _build_mlp, seeded_factory
from workers.preflight import gradient_check, initial_loss_check, overfit_check
from workers.trainers.datasets import load_split
from workers.vault import part_tensors

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = part_tensors(load_split("digits", 0).train)
    return features, labels


def mlp_factory(**params: Any) -> Any:
    """The built-in trainer's own model, as the checks build it."""
    return seeded_factory(_build_mlp, {"name": "mlp"}, params, 64, NUM_CLASSES)


class WrongBackward(torch.autograd.Function):
    """The identity forward, but a backward that doubles the gradient: a classic bug."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor) -> torch.Tensor:
        return inputs.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> torch.Tensor:
        return 2.0 * grad_output


class BuggyLayer(nn.Module):
    """A hand-written layer whose analytic gradient is wrong."""

    def __init__(self, width_in: int, width_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width_in, width_out)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        applied: torch.Tensor = WrongBackward.apply(self.linear(inputs))
        return applied


def buggy_factory(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(BuggyLayer(64, 32), nn.ReLU(), nn.Linear(32, NUM_CLASSES))


def frozen_factory(seed: int) -> nn.Module:
    model = mlp_factory()(seed)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def test_a_correct_model_starts_near_ln_c_over_several_seeds(digits: Any) -> None:
    outcome = initial_loss_check(mlp_factory(), *digits, NUM_CLASSES, seeds=3)
    assert outcome.passed, outcome.message
    assert outcome.figures["expected_ln_c"] == pytest.approx(math.log(NUM_CLASSES))
    losses = outcome.figures["losses"]
    assert isinstance(losses, list) and len(losses) == 3
    assert len(set(losses)) == 3  # three different initialisations, not one repeated


def test_a_model_whose_logits_are_scaled_up_fails_the_initial_loss_check(digits: Any) -> None:
    def overconfident(seed: int) -> nn.Module:
        model = mlp_factory()(seed)
        with torch.no_grad():
            model[-1].weight.mul_(50.0)  # the last layer's init far too large
        return model

    outcome = initial_loss_check(overconfident, *digits, NUM_CLASSES, seeds=3)
    assert not outcome.passed
    relative = outcome.figures["relative_deviation"]
    assert isinstance(relative, float) and relative > outcome.figures["tolerance"]


def test_a_correct_model_passes_the_gradient_check(digits: Any) -> None:
    outcome = gradient_check(mlp_factory(layers=2, hidden=16), *digits)
    assert outcome.passed, outcome.message
    assert outcome.figures["coordinates_checked"] > 100
    assert outcome.figures["max_relative_error"] < 1e-4


def test_a_wrong_backward_fails_the_gradient_check_with_its_numbers(digits: Any) -> None:
    outcome = gradient_check(buggy_factory, *digits)
    assert not outcome.passed
    worst = outcome.figures["max_relative_error"]
    # A doubled gradient: |2g - g| / (|2g| + |g|) = 1/3 wherever the gradient flows through.
    assert isinstance(worst, float) and worst == pytest.approx(1 / 3, rel=1e-3)
    assert "0.linear" in outcome.message


def test_a_correct_model_overfits_a_tiny_subset(digits: Any) -> None:
    outcome = overfit_check(mlp_factory(), *digits, samples=10)
    assert outcome.passed, outcome.message
    assert outcome.figures["final_loss"] < outcome.figures["target_loss"]


def test_a_model_with_every_weight_frozen_fails_the_overfit_check(digits: Any) -> None:
    outcome = overfit_check(frozen_factory, *digits, samples=10)
    assert not outcome.passed
    assert outcome.figures["trainable_parameters"] == 0
    assert outcome.figures["final_loss"] == pytest.approx(outcome.figures["initial_loss"])


def test_a_model_too_small_for_ten_classes_fails_the_overfit_check(digits: Any) -> None:
    outcome = overfit_check(mlp_factory(hidden=1), *digits, samples=10)
    assert not outcome.passed
    assert outcome.figures["final_loss"] > 0.5
    assert "too small" in outcome.message


def test_a_model_with_no_trainable_weight_fails_the_gradient_check_saying_so(digits: Any) -> None:
    outcome = gradient_check(frozen_factory, *digits)
    assert not outcome.passed
    assert outcome.figures["coordinates_checked"] == 0
    assert "no parameter received a gradient" in outcome.message
