"""The built-in ``mlp`` trainer: a PyTorch multilayer perceptron on a small classification set.

After every epoch it reports the mean validation cross-entropy; the trial's objective is the
best (lowest) of those. It never evaluates on the test split. Thread counts are left to the
worker process: nothing here calls ``torch.set_num_threads``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from service.trainer_catalog import MLP_PARAMETER_DEFAULTS, MLPTrainerSettings
from workers.trainers.base import EpochReporter, TrainResult, TrialRun
from workers.trainers.datasets import DataPart, load_split


@dataclass(frozen=True)
class MLPHyperparameters:
    """The hyperparameters the trainer reads, with defaults filled in and types coerced."""

    lr: float
    batch_size: int
    hidden: int
    layers: int
    dropout: float
    weight_decay: float
    optimizer: str
    momentum: float

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MLPHyperparameters:
        """Fill missing values from ``MLP_PARAMETER_DEFAULTS``; unknown names are ignored."""
        merged = {**MLP_PARAMETER_DEFAULTS, **params}
        chosen = cls(
            lr=float(merged["lr"]),
            batch_size=int(merged["batch_size"]),
            hidden=int(merged["hidden"]),
            layers=int(merged["layers"]),
            dropout=float(merged["dropout"]),
            weight_decay=float(merged["weight_decay"]),
            optimizer=str(merged["optimizer"]).lower(),
            momentum=float(merged["momentum"]),
        )
        chosen.check()
        return chosen

    def check(self) -> None:
        """Raise ``ValueError`` for values no MLP can be built or trained with."""
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', not {self.optimizer!r}")
        if self.batch_size < 1 or self.hidden < 1 or self.layers < 0:
            raise ValueError("batch_size and hidden must be >= 1 and layers >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")


def resolve_device(choice: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; ``"cpu"`` and ``"cuda"`` are taken as given."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def build_model(num_features: int, num_classes: int, hp: MLPHyperparameters) -> nn.Sequential:
    """``hp.layers`` hidden layers of width ``hp.hidden``, each Linear → ReLU → Dropout."""
    blocks: list[nn.Module] = []
    width_in = num_features
    for _ in range(hp.layers):
        blocks += [nn.Linear(width_in, hp.hidden), nn.ReLU(), nn.Dropout(hp.dropout)]
        width_in = hp.hidden
    blocks.append(nn.Linear(width_in, num_classes))
    return nn.Sequential(*blocks)


def build_optimizer(model: nn.Module, hp: MLPHyperparameters) -> torch.optim.Optimizer:
    """SGD with ``hp.momentum``, or Adam (which ignores momentum); both with weight decay."""
    if hp.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)


def to_tensors(part: DataPart, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy one data part onto ``device`` (once per trial; the cached arrays stay untouched)."""
    features = torch.tensor(part.features, dtype=torch.float32, device=device)
    labels = torch.tensor(part.labels, dtype=torch.long, device=device)
    return features, labels


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    shuffle: torch.Generator,
) -> None:
    """One pass over the training data in mini-batches, in an order drawn from ``shuffle``."""
    features, labels = data
    model.train()
    order = torch.randperm(len(labels), generator=shuffle).to(features.device)
    for batch in order.split(batch_size):
        loss = functional.cross_entropy(model(features[batch]), labels[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def validation_loss(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean cross-entropy over the whole validation part, in eval mode."""
    features, labels = data
    model.eval()
    return float(functional.cross_entropy(model(features), labels).item())


def report_epochs(
    epochs: int, run_epoch: Callable[[], float], report: EpochReporter
) -> TrainResult:
    """Call ``run_epoch`` up to ``epochs`` times, reporting each validation loss; stop when told.

    The result's value is the best (lowest) loss reported. A NaN or infinite loss raises
    ``ValueError`` naming the epoch, and is never reported.
    """
    best = math.inf
    for epoch in range(1, epochs + 1):
        value = run_epoch()
        if not math.isfinite(value):
            raise ValueError(f"validation loss diverged at epoch {epoch} (loss = {value})")
        best = min(best, value)
        if report(epoch, value):
            return TrainResult(value=best, epochs_run=epoch, pruned=True)
    return TrainResult(value=best, epochs_run=epochs, pruned=False)


class MLPTrainer:
    """The built-in trainer, entry point ``mlp``: an MLP classifier on a scikit-learn data set."""

    def train(self, run: TrialRun, report: EpochReporter) -> TrainResult:
        """Train for ``settings.epochs``, reporting validation loss each epoch; stop when told."""
        settings = MLPTrainerSettings.model_validate(run.settings)
        hp = MLPHyperparameters.from_params(run.params)
        device = resolve_device(settings.device)
        split = load_split(
            settings.dataset, settings.seed, settings.validation_fraction, settings.test_fraction
        )
        train_data = to_tensors(split.train, device)
        validation_data = to_tensors(split.validation, device)
        torch.manual_seed(run.seed)
        shuffle = torch.Generator().manual_seed(run.seed)
        model = build_model(split.num_features, split.num_classes, hp).to(device)
        optimizer = build_optimizer(model, hp)

        def run_epoch() -> float:
            train_one_epoch(model, optimizer, train_data, hp.batch_size, shuffle)
            return validation_loss(model, validation_data)

        return report_epochs(settings.epochs, run_epoch, report)
