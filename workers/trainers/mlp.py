"""The built-in ``mlp`` trainer: a PyTorch MLP (or, with ``model: cnn``, a small CNN) classifier.

After every epoch it reports the mean validation cross-entropy; the trial's objective is the
best (lowest) of those. It never evaluates on the test split. The training practices it offers
(optimizers, schedules, regularisers, architectures, monitoring) live in the modules beside it;
this one puts them together. Thread counts are left to the worker process.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from service.trainer_catalog import MLPParameters, MLPTrainerSettings
from workers.checkpoints import keep_best
from workers.trainers.architectures import build_model
from workers.trainers.base import EpochReporter, TrainResult, TrialRun
from workers.trainers.cnn import build_cnn
from workers.trainers.datasets import DataPart, load_split
from workers.trainers.monitoring import (
    GradientMonitor,
    check_loss,
    classification_figures,
    forward_counting_dead_relus,
)
from workers.trainers.optimizers import build_optimizer
from workers.trainers.regularisers import (
    EarlyStopping,
    augment,
    balanced_order,
    class_weights,
    l1_penalty,
)
from workers.trainers.schedules import EpochSchedule

# The names other modules import from here (the study jobs build the model as trials do).
MLPHyperparameters = MLPParameters
__all__ = ["MLPHyperparameters", "MLPTrainer", "build_model", "build_optimizer"]
logger = logging.getLogger(__name__)
Tensors = tuple[torch.Tensor, torch.Tensor]


def resolve_device(choice: str) -> torch.device:
    """``"auto"`` is CUDA when available, else CPU; ``"cpu"`` and ``"cuda"`` are taken as given."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def to_tensors(part: DataPart, device: torch.device) -> Tensors:
    """Copy one data part onto ``device`` once per trial (never per batch)."""
    features = torch.tensor(part.features, dtype=torch.float32, device=device)
    labels = torch.tensor(part.labels, dtype=torch.long, device=device)
    return features, labels


@torch.no_grad()
def validation_loss(model: nn.Module, data: Tensors) -> float:
    """Mean cross-entropy over the whole validation part, in eval mode."""
    features, labels = data
    model.eval()
    return float(functional.cross_entropy(model(features), labels).item())


@dataclass
class TrainingLoop:
    """One trial's model, optimizer, data and practices; ``epoch`` trains once over the data."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    hp: MLPParameters
    settings: MLPTrainerSettings
    train_data: Tensors
    validation_data: Tensors
    num_classes: int
    generator: torch.Generator
    history: list[dict[str, float]]

    def __post_init__(self) -> None:
        use_amp = self.settings.mixed_precision and self.train_data[0].is_cuda
        if self.settings.mixed_precision and not use_amp:
            logger.warning("mixed_precision is ignored: it needs CUDA, and this trial runs on CPU")
        self.autocast: Any = (
            (lambda: torch.autocast("cuda", dtype=torch.float16)) if use_amp else nullcontext
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        labels = self.train_data[1]
        balanced = self.settings.class_balance == "weighted_loss"
        self.weights = class_weights(labels, self.num_classes) if balanced else None
        self.monitor = GradientMonitor(self.model)
        self.schedule = EpochSchedule(self.optimizer, self.hp, self.settings.epochs)

    def epoch(self, number: int) -> dict[str, float]:
        """Train one epoch, then score the validation part; the epoch's record (``epoch_s``:
        the seconds the two took, on the worker's clock)."""
        started = time.perf_counter()
        lr = self.schedule.lr
        train_loss, batches = self._train_batches(number)
        record = {"epoch": float(number), "lr": lr, "train_loss": train_loss}
        record.update(self.monitor.epoch_figures(batches))
        record.update(self._validation_figures())
        record["epoch_s"] = time.perf_counter() - started
        at = f"epoch {number}"
        check_loss(record["validation_loss"], math.inf, "validation loss", at, self.history)
        self.history.append(record)
        self.schedule.step(record["validation_loss"])
        return record

    def _order(self) -> torch.Tensor:
        labels = self.train_data[1]
        if self.settings.class_balance == "resample":
            order = balanced_order(labels, self.num_classes, self.generator)
        else:
            order = torch.randperm(len(labels), generator=self.generator)
        return order.to(labels.device)

    def _train_batches(self, number: int) -> tuple[float, int]:
        """Train over every batch; the mean training loss. The loss is checked once per epoch
        (its sum and its largest batch value), so the GPU is not synchronised per batch."""
        features, labels = self.train_data
        self.model.train()
        self.monitor.start_epoch()
        losses: list[torch.Tensor] = []
        batches = self._order().split(self.hp.batch_size)
        for batch in batches:
            inputs = augment(
                features[batch], self.hp.augment_shift, self.hp.augment_noise, self.generator
            )
            with self.autocast():
                loss = functional.cross_entropy(self.model(inputs), labels[batch], self.weights)
            self._step(loss + l1_penalty(self.model, self.hp.l1) if self.hp.l1 else loss)
            losses.append(loss.detach())
        stacked = torch.stack(losses).float() if losses else torch.zeros(1)
        total, largest = float(stacked.sum()), float(stacked.max())
        at = f"epoch {number}"
        check_loss(total, math.inf, "training loss", at, self.history)
        check_loss(largest, self.settings.max_loss, "training loss", at, self.history)
        return total / len(batches), len(batches)

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if not self.scaler.is_enabled():  # full precision: the scaler would only pass through
            loss.backward()
            self.monitor.after_backward()
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        self.monitor.after_backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def _validation_figures(self) -> dict[str, float]:
        features, labels = self.validation_data
        with torch.no_grad():
            output, dead = forward_counting_dead_relus(self.model, features)
            logits = output.float()
            loss = float(functional.cross_entropy(logits, labels))
        figures = {"validation_loss": loss, **classification_figures(logits, labels)}
        if dead is not None:
            figures["dead_relu_fraction"] = dead
        return figures


def run_epochs(loop: TrainingLoop, report: EpochReporter, patience: int) -> TrainResult:
    """Train up to ``epochs`` epochs, reporting each validation loss; stop when told, or early
    when the validation loss has not improved for ``patience`` epochs. The value is the best
    validation loss reported; the metrics are those of the best epoch."""
    stopping = EarlyStopping(patience)
    best: dict[str, float] = {}
    for number in range(1, loop.settings.epochs + 1):
        record = loop.epoch(number)
        if not best or record["validation_loss"] < best["validation_loss"]:
            best = record
            keep_best(loop.model, record["validation_loss"])  # the trial's best checkpoint
        pruned = report(number, record["validation_loss"])
        if (
            pruned
            or stopping.should_stop(record["validation_loss"])
            or number == loop.settings.epochs
        ):
            return _result(loop, best, number, pruned)
    raise AssertionError("unreachable: epochs >= 1")


def _result(
    loop: TrainingLoop, best: dict[str, float], epochs_run: int, pruned: bool
) -> TrainResult:
    figures = ("validation_loss", "validation_accuracy", "validation_macro_f1")
    metrics = {name: best[name] for name in figures}
    metrics["n_parameters"] = float(sum(p.numel() for p in loop.model.parameters()))
    return TrainResult(
        value=best["validation_loss"],
        epochs_run=epochs_run,
        pruned=pruned,
        metrics=metrics,
        epoch_metrics=list(loop.history),
    )


class MLPTrainer:
    """The built-in trainer, entry point ``mlp``: an MLP or CNN classifier on a small data set."""

    def train(self, run: TrialRun, report: EpochReporter) -> TrainResult:
        """Train for ``settings.epochs``, reporting validation loss each epoch; stop when told."""
        settings = MLPTrainerSettings.model_validate(run.settings)
        hp = MLPParameters.from_params({**settings.params, **run.params})
        device = resolve_device(settings.device)
        split = load_split(
            settings.dataset, settings.seed, settings.validation_fraction, settings.test_fraction
        )
        torch.manual_seed(run.seed)
        build = build_cnn if settings.model == "cnn" else build_model
        model = build(split.num_features, split.num_classes, hp).to(device)
        loop = TrainingLoop(
            model=model,
            optimizer=build_optimizer(model, hp),
            hp=hp,
            settings=settings,
            train_data=to_tensors(split.train, device),
            validation_data=to_tensors(split.validation, device),
            num_classes=split.num_classes,
            generator=torch.Generator().manual_seed(run.seed),
            history=[],
        )
        return run_epochs(loop, report, hp.early_stopping_patience)
