"""The kept ranking and columns of finished trials (``service.tpe_figures``) give what Optuna 5's
TPE works out from scratch: the same split into better and worse trials, the same arrays of
internal values (types included), ask after ask as trials finish."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.samplers._tpe import sampler as optuna_tpe
from optuna.trial import FrozenTrial, TrialState

from service.tpe_figures import FinishedTrialFigures
from service.tpe_split import SplitOnceTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
# What TPE splits with constant liar (the service's default): finished and running trials.
SPLIT_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
CONSTRAINTS_KEY = "constraints"  # where Optuna keeps a trial's constraint values


def _grow(
    study: optuna.Study, rng: random.Random, count: int, complete: int = 3, infeasible: bool = False
) -> None:
    """``count`` more trials ended at random: complete (``complete`` in 9; values with ties, some
    0.0, -0.0 or infinite), pruned (steps and values with ties, some NaN, some without reports),
    failed, or running; ``infeasible``: a finished trial in ten violates its constraints."""
    for _ in range(count):
        trial = study.ask()
        trial.suggest_float("x", -1.0, 1.0)
        trial.suggest_int("units", 1, 8)
        if rng.random() < 0.5:  # a parameter only some trials have
            trial.suggest_categorical("kind", ["a", "b", "c"])
        how = rng.choice(
            ["complete"] * complete + ["pruned"] * (7 - complete) + ["failed", "running"]
        )
        value = rng.choice([round(rng.random(), 1)] * 7 + [0.0, -0.0, math.inf])
        for step in range(1, rng.randint(0, 3) + 1):
            trial.report(math.nan if rng.random() < 0.05 else value, step)
        if how in ("complete", "pruned"):
            violation = 0.5 if infeasible and rng.random() < 0.1 else -1.0
            study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY, [violation])
        if how == "complete":
            study.tell(trial, value)
        elif how == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif how == "failed":
            study.tell(trial, state=TrialState.FAIL)


def _split_of(sampler: SplitOnceTPESampler, study: optuna.Study, trials: list[FrozenTrial]) -> Any:
    sampler._gamma = optuna_tpe.default_gamma
    sampler._split = None  # a new ask
    below, above = sampler._split_once(study, trials)
    return [t.number for t in below], [t.number for t in above]


def _optunas_split(study: optuna.Study, trials: list[FrozenTrial]) -> Any:
    n = sum(t.state != TrialState.RUNNING for t in trials)
    below, above = optuna_tpe._split_trials(study, trials, optuna_tpe.default_gamma(n))
    return [t.number for t in below], [t.number for t in above]


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("complete", [0, 1, 3])
@pytest.mark.parametrize("infeasible", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_the_kept_ranking_splits_as_optuna_splits_ask_after_ask(
    direction: str, complete: int, infeasible: bool, seed: int
) -> None:
    """Up to 800 trials, none, few or many of them complete, so that the better part (at most 25)
    is taken from complete trials, pruned ones or both; the same figures kept throughout, as a
    study's mirror keeps them. Where trials violate constraints, from the first one on the split
    is Optuna's own order on kept scores (infeasible trials last)."""
    rng = random.Random(seed)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.RandomSampler(seed))
    figures = FinishedTrialFigures()
    for _ in range(40):
        _grow(study, rng, rng.randint(1, 20), complete, infeasible)
        trials = study.get_trials(deepcopy=False, states=SPLIT_STATES)
        sampler = SplitOnceTPESampler(seed=0)
        sampler._figures, sampler._figures_kept = figures, True
        assert _split_of(sampler, study, trials) == _optunas_split(study, trials)


def test_trials_listed_out_of_number_order_are_split_as_optuna_splits_them() -> None:
    """Optuna breaks ties between equal values by the order of the list it is given: a list not
    in number order is split from scratch, not from the ranking (which assumes that order)."""
    rng = random.Random(7)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    _grow(study, rng, 300)
    trials = study.get_trials(deepcopy=False, states=SPLIT_STATES)
    figures = FinishedTrialFigures()
    for order in (trials, trials[::-1], rng.sample(trials, len(trials)), trials):
        sampler = SplitOnceTPESampler(seed=0)
        sampler._figures, sampler._figures_kept = figures, True
        assert _split_of(sampler, study, order) == _optunas_split(study, order)


def test_kept_columns_are_the_arrays_optuna_makes() -> None:
    """Values, order and types (a categorical's indices are integers, no trials give floats),
    for finished and running trials, trials lacking a parameter, and lists given again."""
    rng = random.Random(3)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    figures = FinishedTrialFigures()
    theirs = optuna.samplers.TPESampler(seed=0)
    ours = SplitOnceTPESampler(seed=0)
    ours._figures = figures
    for _ in range(12):
        _grow(study, rng, rng.randint(0, 15))
        trials = study.get_trials(deepcopy=False)
        distributions = {n: d for t in trials for n, d in t.distributions.items()}
        spaces = [
            {name: distributions[name] for name in names if name in distributions}
            for names in (("x", "units"), ("kind",), ("x", "kind"), ())
        ]
        picks = [trials, trials[::3], [], [t for t in trials if t.state == TrialState.RUNNING]]
        for space in spaces:
            for pick in picks:
                expected = theirs._get_internal_repr(pick, space, study)
                got = ours._get_internal_repr(pick, space, study)
                assert got.keys() == expected.keys()
                for name, array in expected.items():
                    assert got[name].dtype == array.dtype, name
                    np.testing.assert_array_equal(got[name], array)
