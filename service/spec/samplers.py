"""Sampler choices of a study definition, as data.

Every sampler takes ``seed``; the service re-seeds the sampler for each trial (see
``service.policies``), except where the sampler's draws are a sequence indexed in the study (QMC).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationInfo,
    field_validator,
)

from service.spec.space import CategoricalValue
from service.spec.tags import named_or_default

MAX_SEED = 2**32 - 1
MAX_STARTUP_TRIALS = 100_000

StartupTrials = Annotated[int, Field(ge=0, le=MAX_STARTUP_TRIALS)]


class _Sampler(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)


class TPESamplerSpec(_Sampler):
    """Tree-structured Parzen Estimator (the default): learns from every finished trial.

    ``constant_liar`` (default on) counts running trials as bad ones so that parallel trials do
    not all crowd the same point: the service always runs trials in parallel. ``group`` splits a
    multivariate TPE into groups of parameters that were sampled together; it needs
    ``multivariate``.
    """

    name: Literal["tpe"] = "tpe"
    n_startup_trials: StartupTrials = 10
    multivariate: StrictBool = True
    constant_liar: StrictBool = True
    group: StrictBool = False

    @field_validator("group")
    @classmethod
    def _group_needs_multivariate(cls, group: bool, info: ValidationInfo) -> bool:
        if group and info.data.get("multivariate") is False:
            raise ValueError("group needs multivariate: true")
        return group


class RandomSamplerSpec(_Sampler):
    """Independent uniform (or log-uniform) draws."""

    name: Literal["random"]


class GridSamplerSpec(_Sampler):
    """Every point of a grid, in random order; ``grid`` omitted derives it from the space."""

    name: Literal["grid"]
    grid: dict[str, list[CategoricalValue]] | None = None


class CmaEsSamplerSpec(_Sampler):
    """CMA-ES: an evolution strategy over int and float parameters (no categorical ones).

    The first ``n_startup_trials`` complete trials are drawn at random; from then on each
    generation's mean and covariance are learnt from the complete trials, whose state Optuna keeps
    in the study.
    """

    name: Literal["cmaes"]
    n_startup_trials: StartupTrials = 1


class QMCSamplerSpec(_Sampler):
    """Quasi-Monte Carlo: the points of a low-discrepancy sequence, one per trial, in order.

    ``scramble`` randomises the sequence (by ``seed``; a study without one gets a seed fixed by
    its name); unscrambled, the first Sobol' point is the lower corner of the space. Categorical
    parameters take one coordinate of the sequence each. Sobol' points are best balanced when
    ``n_trials`` is a power of two.
    """

    name: Literal["qmc"]
    qmc_type: Literal["sobol", "halton"] = "sobol"
    scramble: StrictBool = False


class GPSamplerSpec(_Sampler):
    """Gaussian-process Bayesian optimisation (log expected improvement, aware of running trials).

    The first ``n_startup_trials`` complete trials are drawn at random. Needs ``torch`` and
    ``scipy`` where the API runs; a study asking for it elsewhere is refused.
    """

    name: Literal["gp"]
    n_startup_trials: StartupTrials = 10


class NSGA2SamplerSpec(_Sampler):
    """NSGA-II: a genetic algorithm for several objectives (a study with ``objectives``).

    Each generation of ``population_size`` trials is bred from the non-dominated (and, with
    constraints, feasible) trials of the earlier ones; the first generation is drawn at random.
    """

    name: Literal["nsga2"]
    population_size: int = Field(default=50, ge=2, le=10_000)
    mutation_prob: float | None = Field(default=None, ge=0, le=1)
    crossover_prob: float = Field(default=0.9, ge=0, le=1)
    swapping_prob: float = Field(default=0.5, ge=0, le=1)


SamplerSpec = Annotated[
    Annotated[TPESamplerSpec, Tag("tpe")]
    | Annotated[RandomSamplerSpec, Tag("random")]
    | Annotated[GridSamplerSpec, Tag("grid")]
    | Annotated[CmaEsSamplerSpec, Tag("cmaes")]
    | Annotated[QMCSamplerSpec, Tag("qmc")]
    | Annotated[GPSamplerSpec, Tag("gp")]
    | Annotated[NSGA2SamplerSpec, Tag("nsga2")],
    Discriminator(named_or_default("tpe")),
]
