"""Optuna samplers and pruners built from a study's spec: pure functions, no storage.

A sampler is built for every ask, seeded with ``seed + number of trials so far``: the sequence
of suggestions depends only on the spec and the study's history, not on which API process
answers, so restarts and several API processes neither repeat nor change suggestions.

Two samplers keep their seed: the grid, whose points are one shuffle fixed by its seed (trial
``k`` takes the ``k``-th; a shuffle of its own for each trial ran some points twice and others
never), and QMC: its points are one sequence, indexed by a counter Optuna keeps in the
study, and a scrambled sequence is fixed by its seed, so its seed must stay the same on every ask
(``qmc_seed``). CMA-ES and GP keep their state in the study's history, so re-seeding them is fine.
"""

from __future__ import annotations

import zlib
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from service.seeded_hyperband import SeededHyperbandPruner
from service.spec.grid import grid_of
from service.spec.pruners import (
    HyperbandPrunerSpec,
    MedianPrunerSpec,
    NoPrunerSpec,
    PatientPrunerSpec,
    PercentilePrunerSpec,
    PrunerSpec,
    SuccessiveHalvingPrunerSpec,
    ThresholdPrunerSpec,
    WilcoxonPrunerSpec,
    WrappablePrunerSpec,
)
from service.spec.samplers import (
    CmaEsSamplerSpec,
    GPSamplerSpec,
    GridSamplerSpec,
    NSGA2SamplerSpec,
    QMCSamplerSpec,
    RandomSamplerSpec,
    TPESamplerSpec,
)
from service.spec.study_spec import StudySpec
from service.tpe_split import SplitOnceTPESampler

SEED_MODULUS = 2**32


def build_sampler(spec: StudySpec, n_trials_so_far: int) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded for the next trial."""
    sampler = spec.sampler
    seed = None if sampler.seed is None else (sampler.seed + n_trials_so_far) % SEED_MODULUS
    if isinstance(sampler, TPESamplerSpec):
        return SplitOnceTPESampler(
            seed=seed,
            n_startup_trials=sampler.n_startup_trials,
            multivariate=sampler.multivariate,
            constant_liar=sampler.constant_liar,
            group=sampler.group,
        )
    if isinstance(sampler, NSGA2SamplerSpec):
        return optuna.samplers.NSGAIISampler(
            seed=seed,
            population_size=sampler.population_size,
            mutation_prob=sampler.mutation_prob,
            crossover_prob=sampler.crossover_prob,
            swapping_prob=sampler.swapping_prob,
        )
    if isinstance(sampler, RandomSamplerSpec):
        return optuna.samplers.RandomSampler(seed=seed)
    if isinstance(sampler, GridSamplerSpec):  # its order is one shuffle, by its seed alone
        return optuna.samplers.GridSampler(grid_of(spec), seed=sampler.seed)
    if isinstance(sampler, CmaEsSamplerSpec):
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=sampler.n_startup_trials)
    if isinstance(sampler, QMCSamplerSpec):
        return SpaceQMCSampler(spec, seed=qmc_seed(spec))
    if isinstance(sampler, GPSamplerSpec):
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=sampler.n_startup_trials)
    raise AssertionError(f"unhandled sampler {sampler!r}")


def qmc_seed(spec: StudySpec) -> int:
    """The QMC sampler's one seed for the whole study: the spec's, or one fixed by the study's name."""
    if spec.sampler.seed is not None:
        return spec.sampler.seed
    return zlib.crc32(spec.name.encode())


class SpaceQMCSampler(optuna.samplers.QMCSampler):
    """Optuna's QMC sampler over the spec's whole space from the first trial on.

    Optuna's own samples the first trial at random (it learns the space from past trials); the
    service knows the space up front, so every trial, the first included, is a point of the
    sequence: point ``k`` for the ``k``-th trial asked.
    """

    def __init__(self, spec: StudySpec, seed: int) -> None:
        sampler = spec.sampler
        assert isinstance(sampler, QMCSamplerSpec)
        super().__init__(qmc_type=sampler.qmc_type, scramble=sampler.scramble, seed=seed)
        self._space = {name: param.distribution() for name, param in spec.space.items()}

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """The spec's space, less the parameters that can take one value only."""
        return {name: dist for name, dist in self._space.items() if not dist.single()}


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study's pruner; Hyperband's resource is the trainer's epoch, its brackets follow the
    sampler's seed (so that one definition, seeded, prunes alike under any study name), else the
    study's name as its tenant gave it (as Optuna's do for a study of that name)."""
    if isinstance(spec.pruner, HyperbandPrunerSpec):
        seed = spec.sampler.seed
        return SeededHyperbandPruner(
            bracket_key=spec.name if seed is None else f"seed-{seed}",
            min_resource=spec.pruner.min_resource,
            max_resource=spec.pruner.max_resource
            if spec.pruner.max_resource is not None
            else "auto",
            reduction_factor=spec.pruner.reduction_factor,
        )
    return _pruner(spec.pruner)


def _pruner(pruner: PrunerSpec | WrappablePrunerSpec) -> optuna.pruners.BasePruner:
    if isinstance(pruner, NoPrunerSpec):
        return optuna.pruners.NopPruner()
    if isinstance(pruner, MedianPrunerSpec):
        return optuna.pruners.MedianPruner(**_compared_to_others(pruner))
    if isinstance(pruner, PercentilePrunerSpec):
        return optuna.pruners.PercentilePruner(pruner.percentile, **_compared_to_others(pruner))
    if isinstance(pruner, SuccessiveHalvingPrunerSpec):
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=pruner.min_resource,
            reduction_factor=pruner.reduction_factor,
            min_early_stopping_rate=pruner.min_early_stopping_rate,
        )
    if isinstance(pruner, ThresholdPrunerSpec):
        return optuna.pruners.ThresholdPruner(
            lower=pruner.lower,
            upper=pruner.upper,
            n_warmup_steps=pruner.n_warmup_steps,
            interval_steps=pruner.interval_steps,
        )
    if isinstance(pruner, PatientPrunerSpec):
        wrapped = None if pruner.wrapped is None else _pruner(pruner.wrapped)
        return optuna.pruners.PatientPruner(
            wrapped, patience=pruner.patience, min_delta=pruner.min_delta
        )
    if isinstance(pruner, WilcoxonPrunerSpec):
        return optuna.pruners.WilcoxonPruner(
            p_threshold=pruner.p_threshold, n_startup_steps=pruner.n_startup_steps
        )
    raise AssertionError(f"unhandled pruner {pruner!r}")


def _compared_to_others(pruner: MedianPrunerSpec | PercentilePrunerSpec) -> dict[str, Any]:
    return {
        "n_startup_trials": pruner.n_startup_trials,
        "n_warmup_steps": pruner.n_warmup_steps,
        "interval_steps": pruner.interval_steps,
        "n_min_trials": pruner.n_min_trials,
    }


def trial_seed(spec: StudySpec, number: int) -> int:
    """The seed a trainer uses for trial ``number``: fixed by the spec, distinct per trial."""
    base = spec.sampler.seed if spec.sampler.seed is not None else 0
    return (base * 1_000_003 + number) % SEED_MODULUS
