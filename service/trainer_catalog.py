"""Which trainers exist, and what the built-in one accepts.

Trainers are Python entry points (group ``hpo.trainers``) installed beside the service and
in the worker image; a request names one and never carries code. The catalog reads entry-point
*names* only, so the API never imports a trainer (nor PyTorch).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TRAINER_ENTRY_POINT_GROUP = "hpo.trainers"


class MLPTrainerSettings(BaseModel):
    """Fixed settings of the built-in ``mlp`` trainer (a PyTorch MLP classifier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["mlp"] = "mlp"
    dataset: Literal["digits", "breast_cancer", "wine", "synthetic"] = "digits"
    epochs: int = Field(default=27, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"


# The hyperparameters the mlp trainer reads, with the value it uses when a study does not search one.
MLP_PARAMETER_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "batch_size": 64,
    "hidden": 128,
    "layers": 1,
    "dropout": 0.0,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "momentum": 0.9,
}

# The figures the mlp trainer reports when a trial completes (objectives and constraints use them).
MLP_FIGURES = frozenset({"validation_loss", "validation_accuracy", "n_parameters"})

_BUILT_IN_SETTINGS: dict[str, type[BaseModel]] = {"mlp": MLPTrainerSettings}
_BUILT_IN_FIGURES: dict[str, frozenset[str]] = {"mlp": MLP_FIGURES}
_BUILT_IN_PARAMETERS: dict[str, frozenset[str]] = {"mlp": frozenset(MLP_PARAMETER_DEFAULTS)}


class TrainerCatalog:
    """The trainers a study may name."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    @classmethod
    def installed(cls) -> TrainerCatalog:
        """Every trainer installed as an entry point in this environment, plus the built-ins."""
        found = {ep.name for ep in entry_points(group=TRAINER_ENTRY_POINT_GROUP)}
        return cls(frozenset(found | set(_BUILT_IN_SETTINGS)))

    def settings_model(self, name: str) -> type[BaseModel] | None:
        """The settings schema of a trainer, where the service knows it."""
        return _BUILT_IN_SETTINGS.get(name)

    def figures(self, name: str) -> frozenset[str] | None:
        """The figures a trainer reports at completion, where the service knows them."""
        return _BUILT_IN_FIGURES.get(name)

    def parameters(self, name: str) -> frozenset[str] | None:
        """The hyperparameter names a trainer reads, where the service knows them."""
        return _BUILT_IN_PARAMETERS.get(name)
