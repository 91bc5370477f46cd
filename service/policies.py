"""Optuna samplers and pruners built from a study's spec: pure functions, no storage.

A sampler is built for every ask, seeded with ``seed + number of trials so far``: the sequence
of suggestions depends only on the spec and the study's history, not on which API process
answers, so restarts and several API processes neither repeat nor change suggestions.
"""

from __future__ import annotations

import optuna

from service.spec.grid import grid_of
from service.spec.pruners import HyperbandPrunerSpec, NoPrunerSpec
from service.spec.samplers import GridSamplerSpec, RandomSamplerSpec, TPESamplerSpec
from service.spec.study_spec import StudySpec

SEED_MODULUS = 2**32


def build_sampler(spec: StudySpec, n_trials_so_far: int) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded for the next trial."""
    sampler = spec.sampler
    seed = None if sampler.seed is None else (sampler.seed + n_trials_so_far) % SEED_MODULUS
    if isinstance(sampler, TPESamplerSpec):
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=sampler.n_startup_trials,
            multivariate=sampler.multivariate,
            constant_liar=True,
        )
    if isinstance(sampler, RandomSamplerSpec):
        return optuna.samplers.RandomSampler(seed=seed)
    if isinstance(sampler, GridSamplerSpec):
        return optuna.samplers.GridSampler(grid_of(spec), seed=seed)
    raise AssertionError(f"unhandled sampler {sampler!r}")


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study's pruner; Hyperband's resource is the trainer's epoch."""
    pruner = spec.pruner
    if isinstance(pruner, HyperbandPrunerSpec):
        return optuna.pruners.HyperbandPruner(
            min_resource=pruner.min_resource,
            max_resource=pruner.max_resource if pruner.max_resource is not None else "auto",
            reduction_factor=pruner.reduction_factor,
        )
    if isinstance(pruner, NoPrunerSpec):
        return optuna.pruners.NopPruner()
    raise AssertionError(f"unhandled pruner {pruner!r}")


def trial_seed(spec: StudySpec, number: int) -> int:
    """The seed a trainer uses for trial ``number``: fixed by the spec, distinct per trial."""
    base = spec.sampler.seed if spec.sampler.seed is not None else 0
    return (base * 1_000_003 + number) % SEED_MODULUS
