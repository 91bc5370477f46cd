"""Pruner choices of a study definition, as data (the options of most live in ``pruner_options``)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from service.spec.pruner_options import (
    MedianPrunerSpec,
    PatientPrunerSpec,
    PercentilePrunerSpec,
    PrunerSpecBase,
    SuccessiveHalvingPrunerSpec,
    ThresholdPrunerSpec,
    WilcoxonPrunerSpec,
    WrappablePrunerSpec,
)
from service.spec.tags import named_or_default

__all__ = [
    "HyperbandPrunerSpec",
    "MedianPrunerSpec",
    "NoPrunerSpec",
    "PatientPrunerSpec",
    "PercentilePrunerSpec",
    "PrunerSpec",
    "SuccessiveHalvingPrunerSpec",
    "ThresholdPrunerSpec",
    "WilcoxonPrunerSpec",
    "WrappablePrunerSpec",
]


class HyperbandPrunerSpec(PrunerSpecBase):
    """Hyperband over the trainer's epochs: brackets of successive halving (the default).

    ``max_resource`` omitted means the trainer's ``epochs``.
    """

    name: Literal["hyperband"] = "hyperband"
    # At most MAX_STEP, checked when a study is submitted (service.spec.validation): a study
    # stored before that check still loads.
    min_resource: int = Field(default=1, ge=1)
    max_resource: int | None = Field(default=None, ge=1)
    reduction_factor: int = Field(default=3, ge=2, le=100)

    @model_validator(mode="after")
    def _order(self) -> HyperbandPrunerSpec:
        if self.max_resource is not None and self.max_resource < self.min_resource:
            raise ValueError(
                f"max_resource ({self.max_resource}) must not be below "
                f"min_resource ({self.min_resource})"
            )
        return self


class NoPrunerSpec(PrunerSpecBase):
    """Every trial runs to its last epoch."""

    name: Literal["none"]


PrunerSpec = Annotated[
    Annotated[HyperbandPrunerSpec, Tag("hyperband")]
    | Annotated[NoPrunerSpec, Tag("none")]
    | Annotated[MedianPrunerSpec, Tag("median")]
    | Annotated[PercentilePrunerSpec, Tag("percentile")]
    | Annotated[SuccessiveHalvingPrunerSpec, Tag("successive_halving")]
    | Annotated[ThresholdPrunerSpec, Tag("threshold")]
    | Annotated[PatientPrunerSpec, Tag("patient")]
    | Annotated[WilcoxonPrunerSpec, Tag("wilcoxon")],
    Discriminator(named_or_default("hyperband")),
]
