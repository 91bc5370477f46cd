"""Regularisers beside dropout, weight decay and batch norm (those live in the model and the
optimizer): the L1 penalty, early stopping, data augmentation and class balancing."""

from __future__ import annotations

import math

import torch
from torch import nn

from workers.trainers.cnn import image_side


def l1_penalty(model: nn.Module, strength: float) -> torch.Tensor | float:
    """``strength`` x the sum of the absolute weights (matrices and kernels; no biases, no norms)."""
    if strength == 0:
        return 0.0
    weights = [p for name, p in model.named_parameters() if p.dim() > 1 and "weight" in name]
    return strength * sum(weight.abs().sum() for weight in weights)


class EarlyStopping:
    """Stop after ``patience`` epochs in a row without a lower validation loss (0: never stop)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = math.inf
        self.epochs_without_improvement = 0

    def should_stop(self, validation_loss: float) -> bool:
        """Record an epoch's validation loss; ``True`` when the patience has run out."""
        if validation_loss < self.best:
            self.best = validation_loss
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return self.patience > 0 and self.epochs_without_improvement >= self.patience


def augment(
    features: torch.Tensor, shift: int, noise: float, generator: torch.Generator
) -> torch.Tensor:
    """A training batch with random shifts of up to ``shift`` pixels (square images only; the
    vacated border is zero) and Gaussian noise of standard deviation ``noise``."""
    out = features
    if shift > 0:
        out = _shift_images(out, shift, generator)
    if noise > 0:
        draw = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
        out = out + noise * draw
    return out


def _shift_images(features: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    side = image_side(features.shape[1])
    images = features.reshape(-1, side, side)
    dy, dx = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
    shifted = torch.zeros_like(images)
    rows_to = slice(max(dy, 0), side + min(dy, 0))
    rows_from = slice(max(-dy, 0), side + min(-dy, 0))
    cols_to = slice(max(dx, 0), side + min(dx, 0))
    cols_from = slice(max(-dx, 0), side + min(-dx, 0))
    shifted[:, rows_to, cols_to] = images[:, rows_from, cols_from]
    return shifted.reshape(features.shape)


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights n / (C · n_c), as scikit-learn's ``balanced`` (absent classes: 0)."""
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float32)
    weights = len(labels) / (num_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def balanced_order(
    labels: torch.Tensor, num_classes: int, generator: torch.Generator
) -> torch.Tensor:
    """An epoch's sample order drawn with replacement so that every class is equally likely."""
    per_sample = class_weights(labels, num_classes)[labels].cpu()
    return torch.multinomial(per_sample, len(labels), replacement=True, generator=generator)
