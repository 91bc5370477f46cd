"""Sampler choices of a study definition, as data."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag

from service.spec.space import CategoricalValue
from service.spec.tags import named_or_default

MAX_SEED = 2**32 - 1


class _Sampler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class TPESamplerSpec(_Sampler):
    """Tree-structured Parzen Estimator (the default): learns from every finished trial."""

    name: Literal["tpe"] = "tpe"
    n_startup_trials: int = Field(default=10, ge=0, le=100_000)
    multivariate: StrictBool = True


class RandomSamplerSpec(_Sampler):
    """Independent uniform (or log-uniform) draws."""

    name: Literal["random"]


class GridSamplerSpec(_Sampler):
    """Every point of a grid, in random order; ``grid`` omitted derives it from the space."""

    name: Literal["grid"]
    grid: dict[str, list[CategoricalValue]] | None = None


SamplerSpec = Annotated[
    Annotated[TPESamplerSpec, Tag("tpe")]
    | Annotated[RandomSamplerSpec, Tag("random")]
    | Annotated[GridSamplerSpec, Tag("grid")],
    Discriminator(named_or_default("tpe")),
]
