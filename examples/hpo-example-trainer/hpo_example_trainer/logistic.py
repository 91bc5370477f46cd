"""Logistic regression (PyTorch) on a synthetic two-class problem the trainer makes itself.

The whole interface of a trainer: a class built with no arguments whose ``train(run, report)``
reads ``run.params`` (the trial's hyperparameters), ``run.settings`` (the study's fixed
``trainer`` settings) and ``run.seed``, calls ``report(epoch, validation_loss)`` after every
epoch (``True`` back means "stop now") and returns a ``TrainResult``.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional

from workers.trainers.base import EpochReporter, TrainingFailed, TrainResult, TrialRun

N_FEATURES = 10


def make_data(seed: int, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points whose class is the sign of a fixed linear rule, with 10 % of labels flipped."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n_samples, N_FEATURES, generator=generator)
    rule = torch.randn(N_FEATURES, generator=generator)
    labels = (features @ rule > 0).float()
    flip = torch.rand(n_samples, generator=generator) < 0.1
    return features, torch.where(flip, 1 - labels, labels)


class LogisticTrainer:
    """Entry point ``example-logistic``: hyperparameters ``lr`` and ``weight_decay``; settings
    ``epochs`` and ``n_samples``."""

    def train(self, run: TrialRun, report: EpochReporter) -> TrainResult:
        """Full-batch gradient descent, one step per epoch, reporting the validation loss."""
        lr = float(run.params.get("lr", 0.1))
        weight_decay = float(run.params.get("weight_decay", 0.0))
        epochs = int(run.settings.get("epochs", 20))
        features, labels = make_data(
            int(run.settings.get("data_seed", 0)), int(run.settings.get("n_samples", 400))
        )
        cut = len(labels) * 3 // 4
        torch.manual_seed(run.seed)
        model = torch.nn.Linear(N_FEATURES, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)
        history: list[dict[str, float]] = []
        best = math.inf
        for epoch in range(1, epochs + 1):
            loss = functional.binary_cross_entropy_with_logits(
                model(features[:cut]).squeeze(1), labels[:cut]
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                validation = float(
                    functional.binary_cross_entropy_with_logits(
                        model(features[cut:]).squeeze(1), labels[cut:]
                    )
                )
            if not math.isfinite(validation):
                raise TrainingFailed(f"validation loss diverged at epoch {epoch}", history)
            history.append(
                {"epoch": float(epoch), "train_loss": float(loss), "validation_loss": validation}
            )
            best = min(best, validation)
            if report(epoch, validation):
                return TrainResult(value=best, epochs_run=epoch, pruned=True)
        return TrainResult(value=best, epochs_run=epochs, epoch_metrics=history)
