"""What a trial watches while it trains: a loss that is not finite or passes its bound ends it;
per epoch it records the losses, the gradient norm, the update-to-weight ratio, the fraction of
dead ReLU units, the validation accuracy and macro F1."""

from __future__ import annotations

import math

import torch
from torch import nn

from workers.trainers.base import TrainingFailed

MAX_EPOCH_RECORDS = 1000


def check_loss(
    loss: float, bound: float, what: str, at: str, history: list[dict[str, float]]
) -> None:
    """Raise ``TrainingFailed`` (with the epochs recorded so far) for a NaN or infinite loss, or
    one past ``bound``."""
    if not math.isfinite(loss):
        reason = f"{what} diverged at {at} (loss = {loss})"
    elif loss > bound:
        reason = f"{what} diverged past the bound max_loss={bound:g} at {at} (loss = {loss:.4g})"
    else:
        return
    raise TrainingFailed(reason, epoch_metrics=history)


class GradientMonitor:
    """Accumulates the gradient norm of every batch and the update/weight ratio of the epoch.
    A norm is taken over all parameters at once, as one vector: two operations a batch, not a
    few per parameter (on a small model's CPU batch those cost as much as the batch's step)."""

    def __init__(self, model: nn.Module) -> None:
        self._parameters = [p for p in model.parameters() if p.requires_grad]
        self._norms: list[torch.Tensor] = []
        self._start: list[torch.Tensor] = []

    def start_epoch(self) -> None:
        """Remember the weights as they are before the epoch's updates."""
        self._norms = []
        self._start = [p.detach().clone() for p in self._parameters]

    def after_backward(self) -> None:
        """Record the batch's gradient norm (call after ``backward``, before the step). Not under
        ``torch.no_grad``: gradients carry no graph, and the decorator cost about 5 µs a batch inside a
        small model's training loop, where the norm itself takes about 20."""
        grads = [p.grad for p in self._parameters if p.grad is not None]
        if grads:
            self._norms.append(_total_norm(grads))

    @torch.no_grad()
    def epoch_figures(self, batches: int) -> dict[str, float]:
        """Mean gradient norm over the epoch's batches, and ‖Δw‖/‖w‖ per update (mean)."""
        grad_norm = float(torch.stack(self._norms).mean()) if self._norms else 0.0
        if not self._start:
            return {"grad_norm": grad_norm, "update_ratio": 0.0}
        moved = [p - s for p, s in zip(self._parameters, self._start, strict=True)]
        change, size = float(_total_norm(moved)), float(_total_norm(self._start))
        ratio = change / size / max(batches, 1) if size > 0 else 0.0
        return {"grad_norm": grad_norm, "update_ratio": ratio}


def _total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all ``tensors`` taken as one vector, in float32 at least."""
    norm: torch.Tensor = torch.linalg.vector_norm(
        torch.cat([t.reshape(-1) for t in tensors]).float()
    )
    return norm


@torch.no_grad()
def forward_counting_dead_relus(
    model: nn.Module, features: torch.Tensor
) -> tuple[torch.Tensor, float | None]:
    """``model``'s output for ``features`` in eval mode, and, of all its ReLU units, the fraction
    that output zero for every sample (``None`` when it has no ReLU): one forward pass for both."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    alive: list[torch.Tensor] = []
    hooks = [
        relu.register_forward_hook(lambda _m, _i, out: alive.append((out > 0).any(dim=0)))
        for relu in relus
    ]
    try:
        model.eval()
        output = model(features)
    finally:
        for hook in hooks:
            hook.remove()
    dead = sum(int((~unit).sum()) for unit in alive)
    total = sum(unit.numel() for unit in alive)
    return output, (dead / total if total else None)


def dead_relu_fraction(model: nn.Module, features: torch.Tensor) -> float | None:
    """Of all ReLU units, the fraction that output zero for every sample of ``features``
    (``None`` when the model has no ReLU). Runs in eval mode."""
    return forward_counting_dead_relus(model, features)[1]


def classification_figures(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro F1 of ``logits`` against ``labels``.

    Macro F1 is scikit-learn's ``f1_score(average="macro", zero_division=0)`` (the mean over the
    classes present in the labels or the predictions), computed from a confusion matrix on the
    tensors' device: sklearn's input checks cost more than a small epoch's training.
    """
    predicted = logits.argmax(dim=1)
    classes = logits.shape[1]
    confusion = torch.bincount(labels * classes + predicted, minlength=classes * classes)
    confusion = confusion.reshape(classes, classes).double()
    hits = confusion.diagonal()
    actual, chosen = confusion.sum(dim=1), confusion.sum(dim=0)
    scores = torch.where(actual + chosen > 0, 2 * hits / (actual + chosen).clamp(min=1), 0.0)
    present = (actual + chosen) > 0
    return {
        "validation_accuracy": float(hits.sum() / len(labels)),
        "validation_macro_f1": float(scores[present].mean()),
    }
