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

Here the split is made once per ask (the sampler is built for one ask; the history does not
change during it), and the scores and internal values of finished trials, which never change,
are kept: by the study's mirror between asks (``service.study_mirror``, which keeps TPE's
search space for it too), or by the sampler for its one ask. The split itself is Optuna's: the
same sorts in the same order, on the same scores. Where Optuna's split ranks trials by
domination (several objectives), Optuna's own ``_sample`` runs. ``_sample`` and
``_get_internal_repr`` below are Optuna 5.0.0's with the kept figures used (``optuna`` is
pinned); ``tests/unit/test_tpe_split.py`` compares the suggestions with Optuna's sampler over
varied histories.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers._tpe import sampler as optuna_tpe
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
Split = tuple[list[FrozenTrial], list[FrozenTrial]]


class FinishedTrialFigures:
    """What TPE works out from a study's finished trials, by trial number, kept between asks: the
    scores for its split, and each parameter's internal value. A parameter's internal value does
    not depend on the distribution it is read in: Optuna refuses another kind, other choices or
    another ``log`` for a name within a study, and a number's internal value is the number
    whatever its bounds."""

    def __init__(self) -> None:
        self._infeasible: dict[int, float] = {}
        self._pruned: dict[int, tuple[float, float]] = {}
        self._rows: dict[tuple[str, ...], dict[int, list[float] | None]] = {}
        self.computed = 0  # figures worked out (not found kept), for the tests

    def infeasible(self, trial: FrozenTrial) -> float:
        """How far the trial violates its constraints (0: feasible), Optuna's score."""
        score = self._infeasible.get(trial.number)
        if score is None:
            score = optuna_tpe._get_infeasible_trial_score(trial)
            self._infeasible[trial.number] = score
            self.computed += 1
        return score

    def pruned(self, trial: FrozenTrial, study: Study) -> tuple[float, float]:
        """A pruned trial's rank key (its last step first, then its value), Optuna's score."""
        score = self._pruned.get(trial.number)
        if score is None:
            score = optuna_tpe._get_pruned_trial_score(trial, study)
            self._pruned[trial.number] = score
            self.computed += 1
        return score

    def kept_rows(self, names: tuple[str, ...]) -> dict[int, list[float] | None]:
        """The finished trials' values of the parameters ``names``, in internal form, by trial
        number (``None``: the trial lacks one of them), as kept so far (``add_row``)."""
        return self._rows.setdefault(names, {})

    def add_row(
        self, kept: dict[int, list[float] | None], trial: FrozenTrial, space: dict[str, Any]
    ) -> list[float] | None:
        """Work out a finished trial's row of ``space`` and keep it in ``kept``
        (``kept_rows(tuple(space))``)."""
        row = kept[trial.number] = _internal_row(trial.params, space)
        self.computed += 1
        return row


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
        several asks and studies), but figures kept for the study (``keep_study_state``)."""
        super().before_trial(study, trial)
        self._split = None
        if not self._figures_kept:
            self._figures = FinishedTrialFigures()

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Study
    ) -> dict[str, np.ndarray]:
        """Optuna 5.0.0's ``TPESampler._get_internal_repr``, with a finished trial's values
        kept: the trials that have every parameter of ``search_space``, their values in it."""
        values: dict[str, list[float]] = {name: [] for name in search_space}
        columns = list(values.values())
        kept = self._figures.kept_rows(tuple(search_space))
        for trial in trials:
            row: list[float] | None
            if trial.state.is_finished():
                row = (
                    kept[trial.number]
                    if trial.number in kept
                    else self._figures.add_row(kept, trial, search_space)
                )
            else:  # a running trial (constant liar): read as Optuna reads it
                row = _internal_row(self._get_params(trial, study), search_space)
            if row is not None:
                for column, value in zip(columns, row, strict=True):
                    column.append(value)
        return {name: np.asarray(column) for name, column in values.items()}

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
        finished = [t for t in trials if t.state != TrialState.RUNNING]
        split = self._split
        if split is None or split[0] != len(finished):
            assert self._gamma is not None
            n_below = self._gamma(len(finished))
            split = self._split = (
                len(finished),
                split_finished(study, finished, n_below, self._figures),
            )
        below, above = split[1]
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if running:
            above = sorted([*above, *running], key=lambda t: t.number)
        return below, above


def _internal_row(
    params: dict[str, Any], search_space: dict[str, BaseDistribution]
) -> list[float] | None:
    """``params`` in ``search_space``'s internal form, if they hold all of it (Optuna's test)."""
    if not search_space.keys() <= params.keys():
        return None
    return [dist.to_internal_repr(params[name]) for name, dist in search_space.items()]


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
