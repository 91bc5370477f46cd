"""A study's trials in memory, where its sampler runs: an ask costs one write, not one per parameter.

On Optuna's RDB storage an ask creates the trial, then writes each parameter in its own
transaction, and the sampler reads the history through the storage. Here the history is mirrored
in an Optuna ``InMemoryStorage``, brought up to date before each ask from the trials the caller
read (Optuna's cached storage reads only new and unfinished trials), the sampler suggests against
it exactly as it would against the database, and the new trial (parameters and system
attributes) is written with its lease in one transaction (``service.storage.optuna_rows``). Same
sampler, same seed, same history: the same suggestions (``tests/integration/test_study_mirror.py``).

Only for samplers that keep nothing but the trials themselves (TPE and random) and only while no
trial waits with fixed parameters; anything else, and a mirror that cannot be brought up to date,
takes Optuna's own path. A study's mirror is dropped when it stops running. Call under the study
lock.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.search_space import IntersectionSearchSpace
from optuna.storages import BaseStorage, InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from service.spec.conditional import suggest
from service.spec.samplers import RandomSamplerSpec, TPESamplerSpec
from service.spec.study_spec import StudySpec
from service.tpe_figures import FinishedTrialFigures
from service.tpe_split import SplitOnceTPESampler

MIRROR_STUDY_NAME = "mirror"


class MirrorOutOfStep(Exception):
    """The database's trials do not continue the mirror's (a trial was created elsewhere)."""


class StudyMirror:
    """One study's trials in an in-memory Optuna storage, numbered as in the database."""

    def __init__(self, directions: Sequence[StudyDirection]) -> None:
        self.storage = InMemoryStorage()
        self._study_id = self.storage.create_new_study(list(directions), MIRROR_STUDY_NAME)
        self._mirror_ids: list[int] = []  # the mirror's trial id, by trial number
        self._unfinished: set[int] = set()  # numbers of trials that may still change
        self.waiting = False
        # TPE's intersection search space is incremental over trial numbers; one per study kept
        # between asks spares a scan of every trial on each (the sampler itself is new each ask).
        self._search_space = IntersectionSearchSpace(include_pruned=True)
        # What TPE reads from each finished trial, kept the same way (service.tpe_split).
        self._tpe_figures = FinishedTrialFigures()

    def sync(self, trials: Sequence[FrozenTrial]) -> None:
        """Bring the mirror up to ``trials``: every trial of the study, sorted by number."""
        for trial in trials[len(self._mirror_ids) :]:
            self._add(trial)
        for number in sorted(self._unfinished):
            if trials[number].number != number:
                raise MirrorOutOfStep(f"trial at {number} is numbered {trials[number].number}")
            self._update(number, trials[number])
        self.waiting = any(
            trials[number].state == TrialState.WAITING for number in self._unfinished
        )

    def sample(self, sampler: optuna.samplers.BaseSampler, space: Mapping[str, Any]) -> FrozenTrial:
        """A new trial with its parameters chosen by ``sampler`` against the mirrored history.
        It is in the mirror from now on, as the next number."""
        if isinstance(sampler, SplitOnceTPESampler):
            sampler.keep_study_state(self._search_space, self._tpe_figures)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.Study(
                study_name=MIRROR_STUDY_NAME, storage=self.storage, sampler=sampler
            )
            trial = suggest(study, space)
        self._mirror_ids.append(trial._trial_id)
        self._unfinished.add(trial.number)
        return self.storage.get_trial(trial._trial_id)

    def set_system_attr(self, number: int, key: str, value: Any) -> FrozenTrial:
        """Record a system attribute on a trial the mirror created (as the database will hold
        it); the trial as it now stands (the storage keeps a new copy on each change)."""
        self.storage.set_trial_system_attr(self._mirror_ids[number], key, value)
        return self.storage.get_trial(self._mirror_ids[number])

    def _add(self, trial: FrozenTrial) -> None:
        if trial.number != len(self._mirror_ids):
            raise MirrorOutOfStep(f"trial number {trial.number}, expected {len(self._mirror_ids)}")
        self._mirror_ids.append(self.storage.create_new_trial(self._study_id, trial))
        if not trial.state.is_finished():
            self._unfinished.add(trial.number)

    def _update(self, number: int, trial: FrozenTrial) -> None:
        """Copy what changed in an unfinished trial: new parameters, steps, attributes, state."""
        mirror_id = self._mirror_ids[number]
        mirrored = self.storage.get_trial(mirror_id)
        if trial.state == mirrored.state == TrialState.WAITING:
            return
        for name, value in trial.params.items():
            if name not in mirrored.params:
                distribution = trial.distributions[name]
                internal = distribution.to_internal_repr(value)
                self.storage.set_trial_param(mirror_id, name, internal, distribution)
        for step, value in trial.intermediate_values.items():
            if mirrored.intermediate_values.get(step) != value:
                self.storage.set_trial_intermediate_value(mirror_id, step, value)
        for key, value in trial.system_attrs.items():
            if mirrored.system_attrs.get(key, _ABSENT) != value:
                self.storage.set_trial_system_attr(mirror_id, key, value)
        for key, value in trial.user_attrs.items():
            if mirrored.user_attrs.get(key, _ABSENT) != value:
                self.storage.set_trial_user_attr(mirror_id, key, value)
        if trial.state != mirrored.state:
            self.storage.set_trial_state_values(mirror_id, trial.state, trial.values)
        if trial.state.is_finished():
            self._unfinished.discard(number)


_ABSENT = object()


def mirrors(spec: StudySpec) -> bool:
    """Whether the study's sampler can run against a mirror: it reads nothing but the trials."""
    return isinstance(spec.sampler, TPESamplerSpec | RandomSamplerSpec)


class StudyMirrors:
    """The mirror of each study this process has asked for, made from the database on first use."""

    def __init__(self) -> None:
        self._mirrors: dict[int, StudyMirror] = {}

    def synced(
        self, study_id: int, storage: BaseStorage, trials: Sequence[FrozenTrial]
    ) -> StudyMirror:
        """The study's mirror, brought up to ``trials``; a mirror out of step is made anew."""
        mirror = self._mirrors.get(study_id)
        if mirror is not None:
            try:
                mirror.sync(trials)
                return mirror
            except (MirrorOutOfStep, IndexError):
                self.forget(study_id)
        mirror = StudyMirror(storage.get_study_directions(study_id))
        mirror.sync(trials)
        self._mirrors[study_id] = mirror
        return mirror

    def forget(self, study_id: int) -> None:
        """Drop a study's mirror (it failed half-way, or the study is gone)."""
        self._mirrors.pop(study_id, None)
