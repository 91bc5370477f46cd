"""Pre-flight sanity checks of a classifier, run once per study before its first trial.

From the lecture notes' common practices (seed 001):
- the untrained model's loss should be that of random guessing, ln(C) for C classes, over
  several random initialisations;
- the model must be able to overfit a tiny subset (5-20 samples) to near-zero loss with
  regularisation off, or there is a bug or the model is too small;
- the analytic gradients must match numeric ones (central differences, float64, relative error)
  on a small batch.

Each check takes a model factory ``seed -> nn.Module`` and data tensors, and returns a
:class:`~service.preflight.CheckOutcome` with its figures; a failure is reported, never raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from service.preflight import CheckOutcome, PreflightReport, PreflightSpec

ModelFactory = Callable[[int], nn.Module]


@dataclass(frozen=True)
class CheckLimits:
    """The thresholds and sizes of the checks."""

    initial_loss_tolerance: float = 0.25  # |mean loss over the seeds - ln C| / ln C
    initial_loss_samples: int = 256
    overfit_loss: float = 0.01  # cross-entropy the tiny subset must get below
    overfit_steps: int = 400
    overfit_lr: float = 0.01
    gradient_batch: int = 4
    gradient_coordinates: int = 64  # per parameter tensor, drawn at random (all if fewer)
    gradient_step: float = 1e-6
    gradient_tolerance: float = 1e-3  # largest relative error allowed (ReLU kinks: ~1e-4)


def initial_loss_check(
    factory: ModelFactory,
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    seeds: int,
    limits: CheckLimits = CheckLimits(),
) -> CheckOutcome:
    """The untrained model's cross-entropy, per seed, against ln(C)."""
    expected = math.log(num_classes)
    batch_x, batch_y = (
        features[: limits.initial_loss_samples],
        labels[: limits.initial_loss_samples],
    )
    losses = []
    for seed in range(seeds):
        model = factory(seed).eval()
        with torch.no_grad():
            losses.append(float(functional.cross_entropy(model(batch_x), batch_y)))
    mean = sum(losses) / len(losses)
    deviation = abs(mean - expected) / expected
    passed = math.isfinite(mean) and deviation <= limits.initial_loss_tolerance
    return CheckOutcome(
        name="initial_loss",
        passed=passed,
        figures={
            "expected_ln_c": expected,
            "losses": [_finite(loss) for loss in losses],
            "mean_loss": _finite(mean),
            "relative_deviation": _finite(deviation),
            "tolerance": limits.initial_loss_tolerance,
        },
        message=(
            f"untrained loss over {seeds} seeds {_range(losses)} against ln({num_classes}) = "
            f"{expected:.4f}: the mean {mean:.4f} deviates by {deviation:.3g} "
            f"({'within' if passed else 'past'} {limits.initial_loss_tolerance})"
        ),
    )


def overfit_check(
    factory: ModelFactory,
    features: torch.Tensor,
    labels: torch.Tensor,
    samples: int,
    limits: CheckLimits = CheckLimits(),
) -> CheckOutcome:
    """Train on ``samples`` examples alone (full batch, Adam, no regularisation) towards zero loss."""
    torch.manual_seed(0)
    model = factory(0).train()
    subset_x, subset_y = features[:samples], labels[:samples]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=limits.overfit_lr) if trainable else None
    first = last = float("nan")
    steps = 0
    for steps in range(1, limits.overfit_steps + 1):
        loss = functional.cross_entropy(model(subset_x), subset_y)
        last = float(loss.detach())
        first = last if steps == 1 else first
        if not math.isfinite(last) or last < limits.overfit_loss or optimizer is None:
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    passed = math.isfinite(last) and last < limits.overfit_loss
    return CheckOutcome(
        name="overfit_tiny_subset",
        passed=passed,
        figures={
            "samples": samples,
            "steps": steps,
            "initial_loss": _finite(first),
            "final_loss": _finite(last),
            "target_loss": limits.overfit_loss,
            "trainable_parameters": sum(p.numel() for p in trainable),
        },
        message=(
            f"{samples} samples, {steps} full-batch Adam steps (lr {limits.overfit_lr}, no "
            f"regularisation): loss {first:.4g} -> {last:.4g}, "
            f"{'below' if passed else 'not below'} {limits.overfit_loss}"
            + ("" if passed else ": a bug, or a model too small for the task")
        ),
    )


def gradient_check(
    factory: ModelFactory,
    features: torch.Tensor,
    labels: torch.Tensor,
    limits: CheckLimits = CheckLimits(),
) -> CheckOutcome:
    """Analytic (autograd) against central-difference gradients of the loss, in float64."""
    model = factory(0).double().eval()
    batch_x = features[: limits.gradient_batch].double()
    batch_y = labels[: limits.gradient_batch]

    def loss() -> torch.Tensor:
        return functional.cross_entropy(model(batch_x), batch_y)

    model.zero_grad(set_to_none=True)
    if any(parameter.requires_grad for parameter in model.parameters()):
        loss().backward()
    generator = torch.Generator().manual_seed(0)
    errors: list[float] = []
    worst_name = ""
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            continue
        found = _relative_errors(parameter, loss, limits, generator)
        if found and (not errors or max(found) > max(errors)):
            worst_name = name
        errors += found
    worst = max(errors, default=0.0)
    passed = bool(errors) and worst <= limits.gradient_tolerance
    return CheckOutcome(
        name="gradient",
        passed=passed,
        figures={
            "max_relative_error": _finite(worst),
            "mean_relative_error": _finite(sum(errors) / len(errors)) if errors else 0.0,
            "coordinates_checked": len(errors),
            "tolerance": limits.gradient_tolerance,
            "step": limits.gradient_step,
        },
        message=(
            f"{len(errors)} coordinates on a batch of {len(batch_y)}, float64, central "
            f"differences: largest relative error {worst:.3g}"
            + (f" (in {worst_name})" if worst_name else "")
            + f", {'within' if passed else 'past'} {limits.gradient_tolerance}"
            + ("" if errors else ": no parameter received a gradient")
        ),
    )


def _relative_errors(
    parameter: nn.Parameter,
    loss: Callable[[], torch.Tensor],
    limits: CheckLimits,
    generator: torch.Generator,
) -> list[float]:
    """|analytic - numeric| / max(|analytic| + |numeric|, floor) at random coordinates."""
    assert parameter.grad is not None
    analytic = parameter.grad.detach().flatten()
    flat = parameter.data.view(-1)
    count = min(limits.gradient_coordinates, flat.numel())
    chosen = torch.randperm(flat.numel(), generator=generator)[:count]
    errors = []
    with torch.no_grad():
        for index in chosen.tolist():
            original = float(flat[index])
            flat[index] = original + limits.gradient_step
            above = float(loss())
            flat[index] = original - limits.gradient_step
            below = float(loss())
            flat[index] = original
            numeric = (above - below) / (2 * limits.gradient_step)
            exact = float(analytic[index])
            # The floor keeps round-off in a gradient that is zero from reading as a large error.
            errors.append(abs(exact - numeric) / max(abs(exact) + abs(numeric), 1e-7))
    return errors


def _range(values: list[float]) -> str:
    return f"{min(values):.4f}..{max(values):.4f}" if values else "(none)"


def _finite(value: float) -> float:
    """JSON has no NaN or infinity: report them as the largest float."""
    return value if math.isfinite(value) else 1e308


def run_checks(
    factory: ModelFactory,
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    spec: PreflightSpec,
) -> PreflightReport:
    """Every check on the training data (never the test split), in the order they teach."""
    return PreflightReport(
        checks=[
            initial_loss_check(factory, features, labels, num_classes, spec.seeds),
            overfit_check(factory, features, labels, spec.overfit_samples),
            gradient_check(factory, features, labels),
        ]
    )
