"""The models and data a study job works on, built the way the trainer builds them.

A trainer that offers ``build_model(settings, params, num_features, num_classes) -> nn.Module``
and ``load_data(settings) -> SplitDataset`` (a user's trainer may) is asked for them; for the
built-in ``mlp`` trainer, its public model builders (``workers/trainers/architectures.py``,
``cnn.py``) are called with its settings' fixed ``params`` under the trial's, as the trainer does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from service.trainer_catalog import MLPParameters, MLPTrainerSettings
from workers.trainer_loader import load_trainer
from workers.trainers.architectures import build_model
from workers.trainers.cnn import build_cnn
from workers.trainers.datasets import SplitDataset, load_split

# Set to zero for the pre-flight checks: they run with regularisation off.
REGULARISERS_OFF: dict[str, Any] = {"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0}
ModelBuilder = Callable[[dict[str, Any], dict[str, Any], int, int], nn.Module]


def _build_mlp(
    settings: dict[str, Any], params: dict[str, Any], num_features: int, num_classes: int
) -> nn.Module:
    chosen = MLPTrainerSettings.model_validate(settings)
    hp = MLPParameters.from_params({**chosen.params, **params})
    build = build_cnn if chosen.model == "cnn" else build_model
    return build(num_features, num_classes, hp)


def _load_mlp_data(settings: dict[str, Any]) -> SplitDataset:
    chosen = MLPTrainerSettings.model_validate(settings)
    return load_split(chosen.dataset, chosen.seed, chosen.validation_fraction, chosen.test_fraction)


_BUILT_IN: dict[str, tuple[ModelBuilder, Callable[[dict[str, Any]], SplitDataset]]] = {
    "mlp": (_build_mlp, _load_mlp_data),
}


class NoModelForJobs(LookupError):
    """The trainer offers no way to build its model outside a trial."""


def model_builder(trainer_name: str) -> ModelBuilder:
    """How the trainer ``trainer_name`` builds its model from a trial's parameters."""
    if trainer_name in _BUILT_IN:
        return _BUILT_IN[trainer_name][0]
    trainer = load_trainer(trainer_name)
    build = getattr(trainer, "build_model", None)
    if build is None:
        raise NoModelForJobs(f"the trainer '{trainer_name}' offers no build_model for study jobs")
    found: ModelBuilder = build
    return found


def trainer_data(trainer: dict[str, Any]) -> SplitDataset:
    """The trainer's data, split as its trials split it."""
    name = str(trainer["name"])
    if name in _BUILT_IN:
        return _BUILT_IN[name][1](trainer)
    load = getattr(load_trainer(name), "load_data", None)
    if load is None:
        raise NoModelForJobs(f"the trainer '{name}' offers no load_data for study jobs")
    data: SplitDataset = load(trainer)
    return data


def seeded_factory(
    build: ModelBuilder,
    settings: dict[str, Any],
    params: dict[str, Any],
    num_features: int,
    num_classes: int,
) -> Callable[[int], nn.Module]:
    """A factory ``seed -> model``: the same parameters, initialised from ``seed``."""

    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return build(settings, params, num_features, num_classes)

    return make
