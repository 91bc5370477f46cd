"""Optuna's TPE sampler, with its split of the history into better and worse trials made once
per ask, and what it reads from each finished trial kept between asks. Same seed, same history:
the same suggestions.

Before each parameter it samples (one at a time unless ``multivariate``), Optuna 5's TPE splits
every finished trial into the better ``gamma(n)`` and the rest. A trial's place in that split
comes from scores Optuna recomputes for every trial each time: the sum of its violated
constraints (read from its system attributes), and for a pruned trial its last step and value.
At 1,000 trials the split took 1.9 ms of the 4.8 ms that one parameter's sampling takes; a
two-parameter ask split twice.

Then, for each part and each parameter, it converts every trial's value to its internal form
(at 600 trials, a quarter of the sampling).

Here the split of the finished trials is made once per ask (again only if more have finished
meanwhile), and the scores and internal values of finished trials, which never change,
are kept (``service.tpe_figures``): by the study's mirror between asks
(``service.study_mirror``, which keeps TPE's search space for it too), or by the sampler for its
one ask. The finished trials stay ranked as they finish, so a split takes the better part off
the front of the ranking; the values of a part are one indexing of kept columns. The split is
Optuna's: the same order, on the same scores. Where Optuna's split ranks trials by
domination (several objectives), Optuna's own ``_sample`` runs. ``_sample`` and
``_get_internal_repr`` below are Optuna 5.0.0's with the kept figures used (``optuna`` is
pinned); ``tests/unit/test_tpe_split.py`` compares the suggestions with Optuna's sampler over
varied histories.
"""

from __future__ import annotations

import bisect
from operator import attrgetter
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe import sampler as optuna_tpe
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from service.tpe_figures import FinishedTrialFigures

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
Split = tuple[list[FrozenTrial], list[FrozenTrial]]


class SplitOnceTPESampler(optuna.samplers.TPESampler):
    """``TPESampler`` (same arguments) that splits the history once per ask, from kept figures."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._figures = FinishedTrialFigures()
        self._figures_kept = False
        self._split: tuple[int, Split] | None = None  # this ask's finished trials, by their count

    def keep_study_state(
        self, search_space: IntersectionSearchSpace, figures: FinishedTrialFigures
    ) -> None:
        """Use (and add to) what a study keeps between asks: TPE's intersection search space,
        incremental over trial numbers (Optuna 5 holds it as ``_search_space``;
        ``tests/unit/test_study_mirror.py`` fails on a release that renames it), and the
        finished trials' figures."""
        self._search_space = search_space
        self._figures = figures
        self._figures_kept = True

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """A new ask: nothing worked out for the last one is used (one sampler may serve
        several asks and studies), but figures kept for the study (``keep_study_state``: the
        sampler then serves that study only)."""
        super().before_trial(study, trial)
        self._split = None
        if not self._figures_kept:
            self._figures = FinishedTrialFigures()

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Study
    ) -> dict[str, np.ndarray]:
        """Optuna 5.0.0's ``TPESampler._get_internal_repr``, with a finished trial's values
        kept: the trials that have every parameter of ``search_space``, their values in it."""
        return self._figures.columns(
            trials, search_space, lambda trial: self._get_params(trial, study)
        )

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Optuna 5.0.0's ``TPESampler._sample`` for one objective, with the split made once
        (``_split_once``)."""
        if study._is_multi_objective():
            return super()._sample(study, trial, search_space)
        states: tuple[TrialState, ...] = FINISHED_STATES
        if self._constant_liar:  # running trials count as bad ones; the asked one does not
            states = (*FINISHED_STATES, TrialState.RUNNING)
        use_cache = not self._constant_liar
        trials = study._get_trials(deepcopy=False, states=states, use_cache=use_cache)
        if self._constant_liar:
            trials = [t for t in trials if t.number != trial.number]
        if self._gamma is None:
            self._gamma = optuna_tpe.default_gamma
        below_trials, above_trials = self._split_once(study, trials)
        mpe_below = self._build_parzen_estimator(
            study, search_space, below_trials, handle_below=True
        )
        mpe_above = self._build_parzen_estimator(
            study, search_space, above_trials, handle_below=False
        )
        samples_below = mpe_below.sample(self._rng.rng, self._n_ei_candidates)
        acq_func_vals = self._compute_acquisition_func(samples_below, mpe_below, mpe_above)
        chosen = optuna.samplers.TPESampler._compare(samples_below, acq_func_vals)
        for param_name, dist in search_space.items():
            chosen[param_name] = dist.to_external_repr(chosen[param_name])
        return chosen

    def _split_once(self, study: Study, trials: list[FrozenTrial]) -> Split:
        """Optuna's split of ``trials`` (the better ``gamma`` of the finished count): that of
        the finished ones made once per ask, running ones (constant liar) added above as they
        are now. Within an ask the finished trials can only grow in number, so their count tells
        them apart; a running trial may change meanwhile on Optuna's own path (another writer),
        so those are read each time."""
        finished: list[FrozenTrial] = []
        running: list[FrozenTrial] = []
        for t in trials:
            (running if t.state == TrialState.RUNNING else finished).append(t)
        split = self._split
        if split is None or split[0] != len(finished):
            assert self._gamma is not None
            n_below = self._gamma(len(finished))
            split = self._split = (len(finished), self._split_finished(study, finished, n_below))
        below, above = split[1]
        if running:  # into the finished ones, in number order as Optuna sorts them
            above = list(above)
            for t in running:
                bisect.insort(above, t, key=_number)
        return below, above

    def _split_finished(self, study: Study, finished: list[FrozenTrial], n_below: int) -> Split:
        """The kept ranking's split where there is one, Optuna's from kept scores otherwise."""
        ranking = self._figures.ranking(study, finished)
        if ranking is None:
            return split_finished(study, finished, n_below, self._figures)
        better = ranking.better(n_below)
        below: list[FrozenTrial] = []
        above: list[FrozenTrial] = []
        previous = -1
        for trial in finished:
            number = trial.number
            if number <= previous:  # Optuna's ties go by list order: this one's
                return split_finished(study, finished, n_below, self._figures)
            previous = number
            (below if number in better else above).append(trial)
        return below, above


_number = attrgetter("number")


def split_finished(
    study: Study, trials: list[FrozenTrial], n_below: int, scores: FinishedTrialFigures
) -> Split:
    """Optuna's ``_split_trials`` of finished trials of a single-objective study, on kept
    scores: complete trials by value first, then pruned ones by their last step and value, then
    infeasible ones by how far; both parts in trial-number order."""
    complete, pruned, infeasible = [], [], []
    for trial in trials:
        if scores.infeasible(trial) > 0:
            infeasible.append(trial)
        elif trial.state == TrialState.COMPLETE:
            complete.append(trial)
        else:
            pruned.append(trial)
    below_complete, above_complete = optuna_tpe._split_complete_trials(complete, study, n_below)
    n_below = max(0, n_below - len(below_complete))
    ranked = sorted(pruned, key=lambda trial: scores.pruned(trial, study))
    n_pruned = min(n_below, len(ranked))
    below_pruned, above_pruned = ranked[:n_pruned], ranked[n_pruned:]
    n_below = max(0, n_below - len(below_pruned))
    below_infeasible, above_infeasible = optuna_tpe._split_infeasible_trials(infeasible, n_below)
    below = below_complete + below_pruned + below_infeasible
    above = above_complete + above_pruned + above_infeasible
    below.sort(key=lambda trial: trial.number)
    above.sort(key=lambda trial: trial.number)
    return below, above
