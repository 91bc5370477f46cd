"""Which trainers exist, and what the built-in one accepts.

Trainers are Python entry points (group ``hpo.trainers``) installed beside the service and
in the worker image; a request names one and never carries code. The catalog reads entry-point
*names* only, so the API never imports a trainer (nor PyTorch).
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

TRAINER_ENTRY_POINT_GROUP = "hpo.trainers"


OPTIMIZERS = ("sgd", "sgd_momentum", "nesterov", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "step", "exponential", "inverse_time", "plateau", "cosine")
ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "tanh")
INITIALISATIONS = ("default", "xavier", "kaiming")
# The optimizers each sub-parameter belongs to (a study makes them conditional on ``optimizer``).
OPTIMIZER_SUB_PARAMETERS: dict[str, tuple[str, ...]] = {
    "momentum": ("sgd_momentum", "nesterov"),
    "rmsprop_alpha": ("rmsprop",),
    "beta1": ("adam", "adamw"),
    "beta2": ("adam", "adamw"),
    "eps": ("rmsprop", "adam", "adamw"),
}


class NumbersNotBooleans(BaseModel):
    """Refuses ``true`` or ``false`` for a number field (pydantic's lax mode reads them as 1 and
    0: ``"hidden": true`` trained one hidden unit); strings of numbers stay taken (YAML 1.1
    writes ``1e-5`` as one)."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and field.annotation in (int, float):
            kind = "an integer" if field.annotation is int else "a number"
            raise ValueError(f"must be {kind}, not a boolean")
        return value


class MLPParameters(NumbersNotBooleans):
    """The hyperparameters the built-in trainer reads, each with its default and its bounds.

    A study searches any of them (``space``) or fixes them (``trainer.params``); unknown names
    are ignored here and refused by the study's validation.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Architecture
    hidden: int = Field(default=128, ge=1, le=4096)
    layers: int = Field(default=1, ge=0, le=16)
    activation: Literal["relu", "leaky_relu", "elu", "selu", "tanh"] = "relu"
    init: Literal["default", "xavier", "kaiming"] = "default"
    channels: int = Field(default=16, ge=1, le=256, description="CNN: filters per conv layer")
    # Optimizer and its sub-parameters
    optimizer: Literal["sgd", "sgd_momentum", "nesterov", "rmsprop", "adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0, allow_inf_nan=False)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    rmsprop_alpha: float = Field(default=0.99, gt=0, lt=1)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.999, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0, le=1)
    # Learning-rate schedule (t counts finished epochs)
    schedule: Literal["constant", "step", "exponential", "inverse_time", "plateau", "cosine"] = (
        "constant"
    )
    step_size: int = Field(default=10, ge=1, le=1000, description="step: epochs between decays")
    step_gamma: float = Field(default=0.5, gt=0, le=1, description="step: decay factor")
    decay_rate: float = Field(default=0.1, ge=0, le=100, description="k of exponential, 1/t")
    plateau_factor: float = Field(default=0.5, gt=0, lt=1)
    plateau_patience: int = Field(default=2, ge=0, le=1000)
    # Regularisation
    dropout: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    l1: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    batch_norm: bool = False
    early_stopping_patience: int = Field(default=0, ge=0, le=1000, description="0: off")
    augment_shift: int = Field(default=0, ge=0, le=3, description="image data: max pixel shift")
    augment_noise: float = Field(default=0.0, ge=0, le=10, description="Gaussian noise std")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MLPParameters:
        """The trial's values over the defaults; ``ValueError`` for a value out of bounds."""
        return cls.model_validate(params)


# The hyperparameters the mlp trainer reads, with the value it uses when a study does not search one.
MLP_PARAMETER_DEFAULTS: dict[str, Any] = MLPParameters().model_dump()


# A built-in data set, or one a user registered (POST /datasets) by name or id: the study's
# creation checks that it exists.
BUILT_IN_DATASETS = ("digits", "breast_cancer", "wine", "synthetic")


def _known_dataset(name: str) -> str:
    registered = re.fullmatch(r"registered:[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name)
    if name in BUILT_IN_DATASETS or registered:
        return name
    choices = ", ".join(BUILT_IN_DATASETS)
    raise ValueError(f"must be one of {choices}, or registered:<name or id> (POST /datasets)")


DatasetName = Annotated[str, AfterValidator(_known_dataset)]


class MLPTrainerSettings(NumbersNotBooleans):
    """Fixed settings of the built-in ``mlp`` trainer (a PyTorch MLP or small CNN classifier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Literal["mlp"] = "mlp"
    dataset: DatasetName = Field(
        default="digits",
        description="a built-in data set, or registered:<name or id> (POST /datasets)",
    )
    epochs: int = Field(default=27, ge=1, le=1000)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    validation_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: Literal["mlp", "cnn"] = "mlp"
    class_balance: Literal["none", "weighted_loss", "resample"] = "none"
    max_loss: float = Field(default=1e4, gt=0, allow_inf_nan=False)
    mixed_precision: bool = False
    params: dict[str, Any] = Field(
        default_factory=dict, description="fixed hyperparameters (names of MLPParameters)"
    )

    @field_validator("params")
    @classmethod
    def _known_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(MLP_PARAMETER_DEFAULTS))
        if unknown:
            raise ValueError(f"unknown hyperparameters {unknown}")
        try:
            MLPParameters.from_params(params)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{where}: {message}") from None
        return params

    @field_validator("model")
    @classmethod
    def _image_model_needs_image_data(cls, model: str, info: ValidationInfo) -> str:
        dataset = info.data.get("dataset")  # validated before: declared before the model
        if model == "cnn" and dataset in _NON_IMAGE_DATASETS:
            raise ValueError(f"model 'cnn' needs image data (digits), not '{dataset}'")
        return model


_NON_IMAGE_DATASETS = frozenset({"breast_cancer", "wine", "synthetic"})

# The figures the mlp trainer reports when a trial completes (objectives and constraints use them).
MLP_FIGURES = frozenset(
    {"validation_loss", "validation_accuracy", "validation_macro_f1", "n_parameters"}
)

_BUILT_IN_SETTINGS: dict[str, type[BaseModel]] = {"mlp": MLPTrainerSettings}
_BUILT_IN_FIGURES: dict[str, frozenset[str]] = {"mlp": MLP_FIGURES}
_BUILT_IN_PARAMETERS: dict[str, frozenset[str]] = {"mlp": frozenset(MLP_PARAMETER_DEFAULTS)}
_BUILT_IN_PARAMETER_MODELS: dict[str, type[BaseModel]] = {"mlp": MLPParameters}
_BUILT_IN_EPOCH_FIGURES: dict[str, str] = {"mlp": "validation_loss"}


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

    def epoch_figure(self, name: str) -> str | None:
        """The figure a trainer reports each epoch (what a pruner compares), where the service
        knows it."""
        return _BUILT_IN_EPOCH_FIGURES.get(name)

    def parameters_model(self, name: str) -> type[BaseModel] | None:
        """The schema of a trainer's hyperparameters (their bounds), where the service knows it."""
        return _BUILT_IN_PARAMETER_MODELS.get(name)
