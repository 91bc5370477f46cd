"""What Optuna 5's TPE works out from a study's finished trials, kept between asks
(``service.tpe_split``): a finished trial's scores, its place in the ranking TPE's split makes,
and its parameters' internal values. A finished trial never changes, so each is worked out once,
when the trial is first seen finished.

- The ranking: complete trials by value, then pruned ones by their last step and value
  (Optuna's sorts are stable over trials in number order: ties go to the lower number), kept
  sorted as trials finish, so a split takes the better part off the front instead of sorting
  every trial each ask. A study with an infeasible trial (violated constraints) is split as
  Optuna splits it, from the kept scores.
- The internal values: per tuple of parameter names, one column of floats per name indexed by
  trial number, so the values of a list of trials are one indexing per column.

A parameter's internal value does not depend on the distribution it is read in: a study's
space is fixed by its spec (one kind, one set of choices, one ``log`` a name; Optuna refuses
others on its own path), and a number's internal value is the number whatever its bounds. A
kept row is not converted (nor checked) again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers._tpe import sampler as optuna_tpe
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState


class FinishedRanking:
    """A single-objective study's feasible finished trials, ranked as TPE's split ranks them."""

    def __init__(self, direction: StudyDirection) -> None:
        self._sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
        self._complete: list[tuple[float, int]] = []  # (value, or minus it; number), sorted
        self._pruned: list[tuple[tuple[float, float], int]] = []  # (rank key, number), sorted
        self.numbers: set[int] = set()

    def add(self, trial: FrozenTrial, pruned_key: tuple[float, float] | None) -> None:
        """A feasible trial now finished (``pruned_key``: its rank key if it was pruned)."""
        if pruned_key is None:
            assert trial.value is not None
            bisect.insort(self._complete, (self._sign * trial.value, trial.number))
        else:
            bisect.insort(self._pruned, (pruned_key, trial.number))
        self.numbers.add(trial.number)

    def better(self, n_below: int) -> set[int]:
        """The numbers of the ``n_below`` best: complete trials first, then pruned ones."""
        better = [number for _, number in self._complete[:n_below]]
        if len(better) < n_below:
            better += [number for _, number in self._pruned[: n_below - len(better)]]
        return set(better)


class ParameterColumns:
    """Finished trials' internal values of some parameters, one column each, by trial number."""

    def __init__(self, width: int) -> None:
        self.values = np.zeros((0, width))
        self.present = np.zeros(0, dtype=bool)  # the trial holds every parameter of the tuple
        self.numbers: set[int] = set()  # the trials kept

    def cover(self, number: int) -> None:
        """Make room for trial ``number``."""
        if number >= len(self.present):
            size = max(2 * len(self.present), number + 1, 64)
            values = np.zeros((size, self.values.shape[1]))
            values[: len(self.values)] = self.values
            present = np.zeros(size, dtype=bool)
            present[: len(self.present)] = self.present
            self.values, self.present = values, present

    def keep(self, number: int, row: list[float] | None) -> None:
        """A finished trial's row (``None``: it lacks one of the parameters)."""
        self.cover(number)
        if row is not None:
            self.values[number] = row
        self.present[number] = row is not None
        self.numbers.add(number)


class FinishedTrialFigures:
    """The figures of one study's finished trials, kept between asks."""

    def __init__(self) -> None:
        self._infeasible: dict[int, float] = {}
        self._pruned: dict[int, tuple[float, float]] = {}
        self._ranking: FinishedRanking | None = None
        self._ranking_broken = False  # an infeasible trial: Optuna's split from kept scores
        self._columns: dict[tuple[str, ...], ParameterColumns] = {}
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

    def ranking(self, study: Study, finished: Sequence[FrozenTrial]) -> FinishedRanking | None:
        """The ranking of ``finished`` (every finished trial of ``study``, one objective), or
        ``None`` where it cannot be used: an infeasible trial (from then on), or a ranking that
        holds trials ``finished`` lacks (a list of another study)."""
        if self._ranking_broken:
            return None
        if self._ranking is None:
            self._ranking = FinishedRanking(study.direction)
        ranking = self._ranking
        for trial in finished:
            if trial.number not in ranking.numbers:
                if self.infeasible(trial) > 0:
                    self._ranking_broken = True
                    return None
                pruned = trial.state == TrialState.PRUNED
                ranking.add(trial, self.pruned(trial, study) if pruned else None)
                self.computed += 1
        return ranking if len(ranking.numbers) == len(finished) else None

    def columns(
        self,
        trials: Sequence[FrozenTrial],
        search_space: dict[str, BaseDistribution],
        running_params: Callable[[FrozenTrial], dict[str, Any]],
    ) -> dict[str, np.ndarray]:
        """Optuna's internal form of ``trials``' values of ``search_space``, per parameter, for
        the trials that hold them all, in the order given. A finished trial's row is kept; a
        running one's is read from ``running_params(trial)`` each time."""
        kept = self._columns.get(tuple(search_space))
        if kept is None:
            kept = self._columns[tuple(search_space)] = ParameterColumns(len(search_space))
        numbers = [trial.number for trial in trials]
        kept.cover(max(numbers, default=0))
        values, present = kept.values[numbers], kept.present[numbers]
        for index, number in enumerate(numbers):
            if number in kept.numbers:
                continue
            trial = trials[index]
            if trial.state.is_finished():
                row = internal_row(trial.params, search_space)
                kept.keep(number, row)
                self.computed += 1
            else:  # a running trial (constant liar): read as Optuna reads it
                row = internal_row(running_params(trial), search_space)
            if row is not None:
                values[index] = row
            present[index] = row is not None
        return _as_optuna_arrays(values[present], search_space)


def internal_row(
    params: dict[str, Any], search_space: dict[str, BaseDistribution]
) -> list[float] | None:
    """``params`` in ``search_space``'s internal form, if they hold all of it (Optuna's test)."""
    if not search_space.keys() <= params.keys():
        return None
    return [dist.to_internal_repr(params[name]) for name, dist in search_space.items()]


def _as_optuna_arrays(
    rows: np.ndarray, search_space: dict[str, BaseDistribution]
) -> dict[str, np.ndarray]:
    """One array per parameter, as Optuna's ``np.asarray`` of a column makes it: a categorical's
    indices are integers (where there are any), every other value a float."""
    arrays = {}
    for index, (name, dist) in enumerate(search_space.items()):
        column = np.ascontiguousarray(rows[:, index])
        if isinstance(dist, CategoricalDistribution) and len(column):
            column = column.astype(np.int64)
        arrays[name] = column
    return arrays
