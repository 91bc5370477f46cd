"""A study's tally counts its trials as TrialCounts.of does, looking again only at new and
unfinished trials (service.trial_counts.TrialTally)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, overload

from optuna.trial import FrozenTrial, TrialState, create_trial

from service.trial_counts import (
    COPIED_FROM_ATTR,
    REPLACED_ATTR,
    RETRIED_BY_ATTR,
    StudyTallies,
    TrialCounts,
    TrialTally,
)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def trial(number: int, state: TrialState, **system_attrs: Any) -> FrozenTrial:
    made = create_trial(
        state=state,
        value=0.5 if state == TrialState.COMPLETE else None,
        system_attrs=system_attrs,
    )
    made.number = number
    return made


class Watched(Sequence[FrozenTrial]):
    """The trials, noting which indexes were read."""

    def __init__(self, trials: list[FrozenTrial]) -> None:
        self._trials = trials
        self.read: set[int] = set()

    def __len__(self) -> int:
        return len(self._trials)

    @overload
    def __getitem__(self, index: int) -> FrozenTrial: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[FrozenTrial]: ...
    def __getitem__(self, index: int | slice) -> FrozenTrial | Sequence[FrozenTrial]:
        if isinstance(index, slice):
            self.read.update(range(len(self._trials))[index])
            return self._trials[index]
        self.read.add(index)
        return self._trials[index]


def step(trials: list[FrozenTrial], rng: random.Random) -> None:
    """One change a study's trials go through: a trial starts, waits, is copied in, or a
    running one is marked for a retry or a replacement, or finishes."""
    running = [t.number for t in trials if not t.state.is_finished()]
    choice = rng.random()
    if choice < 0.4 or not running:
        kind = rng.choice(["running", "waiting", "copied"])
        state = {"running": TrialState.RUNNING, "waiting": TrialState.WAITING}.get(
            kind, TrialState.COMPLETE
        )
        attrs = {COPIED_FROM_ATTR: 1} if kind == "copied" else {}
        trials.append(trial(len(trials), state, **attrs))
        return
    number = rng.choice(running)
    before = trials[number]
    if choice < 0.55:  # the reaper's retry mark, or a replacement's, while it runs
        mark = rng.choice([RETRIED_BY_ATTR, REPLACED_ATTR])
        trials[number] = trial(number, before.state, **{**before.system_attrs, mark: 9})
    elif choice < 0.65 and before.state == TrialState.WAITING:
        trials[number] = trial(number, TrialState.RUNNING, **before.system_attrs)
    else:
        trials[number] = trial(number, rng.choice(FINISHED), **before.system_attrs)


def test_a_tally_counts_every_step_as_counting_all_trials_does() -> None:
    rng = random.Random(0)
    for _ in range(20):
        tally, trials = TrialTally(), list[FrozenTrial]()
        for _ in range(60):
            step(trials, rng)
            if rng.random() < 0.7:  # counted after some steps, not every one
                assert tally.counts(trials) == TrialCounts.of(trials)
        assert tally.counts(trials) == TrialCounts.of(trials)


def test_a_tally_looks_again_only_at_new_and_unfinished_trials() -> None:
    trials = [trial(n, TrialState.COMPLETE) for n in range(50)]
    trials += [trial(50, TrialState.RUNNING), trial(51, TrialState.WAITING)]
    tally = TrialTally()
    tally.counts(trials)
    trials.append(trial(52, TrialState.RUNNING))
    watched = Watched(trials)
    counts = tally.counts(watched)
    assert counts == TrialCounts.of(trials)
    assert watched.read == {0, 50, 51, 52}  # 0: the first finished trial it counted, in place


def test_a_tally_out_of_step_is_started_again() -> None:
    """Fewer trials than seen before, or a list not indexed by number: counted afresh, as
    counting all trials counts them."""
    tallies = StudyTallies()
    long = [trial(n, TrialState.COMPLETE) for n in range(5)]
    assert tallies.counts(1, long) == TrialCounts.of(long)
    short = [trial(0, TrialState.RUNNING), trial(1, TrialState.FAIL, **{RETRIED_BY_ATTR: 3})]
    assert tallies.counts(1, short) == TrialCounts.of(short)
    misnumbered = [trial(4, TrialState.RUNNING), trial(2, TrialState.COMPLETE)]
    assert tallies.counts(1, misnumbered) == TrialCounts.of(misnumbered)
    tallies.forget(1)
    assert tallies.counts(1, long) == TrialCounts.of(long)


def test_a_study_made_with_a_deleted_one_s_id_is_counted_afresh() -> None:
    """SQLite hands a deleted study's id out again. The new study's trials, as many or more and
    numbered alike (copied in from a warm start, say), are its own, not the deleted one's."""
    tallies = StudyTallies()
    deleted = [trial(n, TrialState.COMPLETE) for n in range(3)] + [trial(3, TrialState.RUNNING)]
    tallies.counts(1, deleted)
    made = [trial(n, TrialState.FAIL, **{COPIED_FROM_ATTR: 5}) for n in range(5)]
    made.append(trial(5, TrialState.RUNNING))
    assert tallies.counts(1, made) == TrialCounts.of(made)
    assert tallies.counts(1, made).total == 1
