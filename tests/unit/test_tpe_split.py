"""The service's TPE sampler suggests what Optuna's does, for the same seed and history.

Two studies are built trial for trial alike: complete trials (values with ties), pruned ones
(some with a NaN or no intermediate value), infeasible ones (violated constraints), failed and
running ones. Each ask builds a fresh sampler with the ask's seed, as the service does, one
Optuna's ``TPESampler`` and one ``SplitOnceTPESampler``; every suggestion must be equal. The
asked trial then ends the same way in both.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import TrialState

from service.tpe_figures import FinishedTrialFigures
from service.tpe_split import SplitOnceTPESampler

optuna.logging.set_verbosity(optuna.logging.WARNING)
CONSTRAINTS_KEY = "constraints"  # where Optuna keeps a trial's constraint values


def _suggest(trial: optuna.Trial) -> dict[str, Any]:
    params: dict[str, Any] = {
        "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
        "x": trial.suggest_float("x", -1.0, 1.0),
        "units": trial.suggest_int("units", 1, 64),
        "kind": trial.suggest_categorical("kind", ["a", "b", "c"]),
    }
    if params["kind"] == "a":  # a parameter only some trials have
        params["depth"] = trial.suggest_int("depth", 1, 4)
    return params


def _end(study: optuna.Study, trial: optuna.Trial, ending: tuple[str, float, int]) -> None:
    """End ``trial`` as ``ending`` says: (how, value, steps reported)."""
    how, value, steps = ending
    if len(study.directions) > 1:  # no reports, no constraints: values or a failure
        if how == "failed":
            study.tell(trial, state=TrialState.FAIL)
        elif how != "running":
            study.tell(trial, [value, -value])
        return
    for step in range(1, steps + 1):
        last_nan = how == "nan" and step == steps
        trial.report(math.nan if last_nan else value + 1.0 / step, step)
    if how in ("complete", "infeasible"):
        violation = value + 0.1 if how == "infeasible" else -1.0
        study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_KEY, [-1.0, violation])
        study.tell(trial, value)
    elif how in ("pruned", "nan"):
        study.tell(trial, state=TrialState.PRUNED)
    elif how == "failed":
        study.tell(trial, state=TrialState.FAIL)
    # "running": left running


MIXED = ["complete"] * 5 + ["pruned"] * 3 + ["nan", "infeasible", "failed", "running"]
# Fewer complete trials than TPE's better part takes: pruned and infeasible ones fill it.
FEW_COMPLETE = ["complete"] + ["pruned"] * 6 + ["nan", "infeasible", "infeasible", "running"]
# No infeasible trial: the split comes from the kept ranking (service.tpe_figures).
FEASIBLE = ["complete"] * 3 + ["pruned"] * 5 + ["nan", "failed", "running"]
# Fewer feasible trials than that: infeasible ones fill it, the least violating first.
FEW_FEASIBLE = ["infeasible"] * 14 + ["pruned", "running"]


def _endings(seed: int, count: int, kinds: list[str] = MIXED) -> list[tuple[str, float, int]]:
    rng = random.Random(seed)
    return [  # values rounded to one digit: ties
        (rng.choice(kinds), round(rng.random(), 1), rng.randint(0, 4)) for _ in range(count)
    ]


def _sampler(
    sampler_class: type[optuna.samplers.TPESampler], seed: int, options: dict[str, Any]
) -> optuna.samplers.TPESampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return sampler_class(seed=seed, n_startup_trials=5, **options)


@pytest.mark.parametrize(
    ("options", "directions"),
    [
        ({"multivariate": True, "constant_liar": True}, ["minimize"]),  # the service's default
        ({"multivariate": False, "constant_liar": False}, ["minimize"]),
        ({"multivariate": False, "constant_liar": True}, ["maximize"]),
        ({"multivariate": True, "constant_liar": False, "group": True}, ["maximize"]),
        ({"multivariate": True, "constant_liar": True}, ["minimize", "maximize"]),
    ],
)
@pytest.mark.parametrize("kept_scores", [False, True])
@pytest.mark.parametrize(
    "kinds",
    [MIXED, FEW_COMPLETE, FEW_FEASIBLE, FEASIBLE],
    ids=["mixed", "few-complete", "few-feasible", "feasible"],
)
def test_the_suggestions_are_optuna_s_for_the_same_seed_and_history(
    options: dict[str, Any], directions: list[str], kept_scores: bool, kinds: list[str]
) -> None:
    """``kept_scores``: the scores are kept between asks, as a study's mirror keeps them."""
    storages = [optuna.storages.InMemoryStorage() for _ in range(2)]
    for storage in storages:
        optuna.create_study(storage=storage, study_name="s", directions=directions)
    scores = FinishedTrialFigures()
    for number, ending in enumerate(_endings(len(options) + len(directions), 70, kinds)):
        seed = 100 + number  # the service seeds each ask's sampler
        theirs = _sampler(optuna.samplers.TPESampler, seed, options)
        ours = _sampler(SplitOnceTPESampler, seed, options)
        if kept_scores:
            ours.keep_study_state(IntersectionSearchSpace(include_pruned=True), scores)  # type: ignore[attr-defined]
        suggested = []
        for storage, sampler in zip(storages, (theirs, ours), strict=True):
            study = optuna.Study("s", storage, sampler=sampler)
            trial = study.ask()
            suggested.append(_suggest(trial))
            _end(study, trial, ending)
        assert suggested[0] == suggested[1], f"ask {number}"


@pytest.mark.parametrize("kinds", [MIXED, FEASIBLE], ids=["mixed", "feasible"])
def test_what_tpe_reads_from_a_finished_trial_is_worked_out_once(kinds: list[str]) -> None:
    """With the figures kept, an ask on the same finished trials works nothing out again: each
    trial's feasibility, a pruned trial's rank, its place in the ranking (where no trial is
    infeasible) and each parameter's internal value were kept."""
    storage = optuna.storages.InMemoryStorage()
    optuna.create_study(storage=storage, study_name="s")
    figures = FinishedTrialFigures()
    running = ("running", 0.0, 0)
    computed = []
    for number, ending in enumerate([*_endings(seed=3, count=40, kinds=kinds), running, running]):
        sampler = SplitOnceTPESampler(seed=number, n_startup_trials=5, constant_liar=True)
        sampler.keep_study_state(IntersectionSearchSpace(include_pruned=True), figures)
        study = optuna.Study("s", storage, sampler=sampler)
        trial = study.ask()
        trial.suggest_float("x", -1.0, 1.0)
        trial.suggest_categorical("kind", ["a", "b", "c"])
        _end(study, trial, ending)
        computed.append(figures.computed)
    # The last two asks saw the same finished trials: the second worked nothing out.
    assert computed[-1] == computed[-2] > computed[-3] > 0


def test_a_parameter_whose_bounds_change_is_read_as_optuna_reads_it() -> None:
    """A float's and an int's bounds widen half-way (Optuna's dynamic value space): the kept
    internal values still give Optuna's suggestions."""
    storages = [optuna.storages.InMemoryStorage() for _ in range(2)]
    for storage in storages:
        optuna.create_study(storage=storage, study_name="s")
    figures = FinishedTrialFigures()
    for number in range(40):
        high = 1.0 if number < 20 else 3.0
        ours = SplitOnceTPESampler(seed=number, n_startup_trials=5)
        ours.keep_study_state(IntersectionSearchSpace(include_pruned=True), figures)
        theirs = optuna.samplers.TPESampler(seed=number, n_startup_trials=5)
        suggested = []
        for storage, sampler in zip(storages, (theirs, ours), strict=True):
            study = optuna.Study("s", storage, sampler=sampler)
            trial = study.ask()
            x = trial.suggest_float("x", 0.0, high)
            units = trial.suggest_int("units", 1, int(high * 10))
            suggested.append((x, units))
            study.tell(trial, (x - 0.7) ** 2 + units / 100)
        assert suggested[0] == suggested[1], f"ask {number}"


def _ask_while_another_writer_samples(
    sampler: optuna.samplers.TPESampler, finishing: int
) -> tuple[float, float]:
    """An ask of ``x`` then ``y`` (independent sampling) while eight running trials of another
    writer get their ``y`` between the two, and ``finishing`` of them complete (as on Optuna's
    own path, on the database)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        study.tell(trial, (x - 0.3) ** 2 + (y - 0.3) ** 2)
    others = [study.ask() for _ in range(8)]
    for other in others:
        other.suggest_float("x", 0, 1)
    study.sampler = sampler
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    for other in others:
        study._storage.set_trial_param(other._trial_id, "y", 0.3, FloatDistribution(0, 1))
    for other in others[:finishing]:
        study.tell(other, 0.01)
    return x, trial.suggest_float("y", 0, 1)


@pytest.mark.parametrize("finishing", [0, 2])
def test_trials_that_change_during_an_ask_are_read_as_they_are_now(finishing: int) -> None:
    """Constant liar counts running trials as bad ones: a running trial that gained a parameter
    between two of the ask's parameters, or finished (the split is made again), is in the
    second's estimate as in Optuna's."""
    for seed in range(40):
        options = {"seed": seed, "n_startup_trials": 5, "multivariate": False}
        theirs = _ask_while_another_writer_samples(optuna.samplers.TPESampler(**options), finishing)
        ours = _ask_while_another_writer_samples(SplitOnceTPESampler(**options), finishing)
        assert ours == theirs, f"seed {seed}"


def test_one_sampler_asked_for_two_studies_suggests_as_optuna_s() -> None:
    """Without figures kept for it, a sampler keeps nothing from one ask to the next: the same
    sampler used for a second study reads that study's trials, not the first's."""

    def suggestions(sampler: optuna.samplers.TPESampler) -> list[float]:
        suggested = []
        for target in (0.2, 0.8):
            study = optuna.create_study(sampler=sampler)
            for _ in range(25):
                trial = study.ask()
                x = trial.suggest_float("x", 0, 1)
                study.tell(trial, (x - target) ** 2)
                suggested.append(x)
        return suggested

    options = {"seed": 1, "n_startup_trials": 5}
    theirs = suggestions(optuna.samplers.TPESampler(**options))
    assert suggestions(SplitOnceTPESampler(**options)) == theirs


def test_the_study_s_kept_search_space_is_the_one_tpe_updates() -> None:
    """Handed a study's search space, a new sampler brings that one up to date (it is
    incremental over trial numbers) instead of making its own from every trial."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1))
    kept = IntersectionSearchSpace(include_pruned=True)
    sampler = SplitOnceTPESampler(seed=0, n_startup_trials=5)
    sampler.keep_study_state(kept, FinishedTrialFigures())
    study.sampler = sampler
    study.ask().suggest_float("x", 0, 1)
    assert kept._cached_trial_number == 8  # trials 0-7, finished, read by the ask's sampler
