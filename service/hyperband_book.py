"""Hyperband's bookkeeping kept incrementally: per study, bracket and rung, the sorted values of
the trials that completed that rung.

Optuna's HyperbandPruner re-reads every trial of the study on each ``should_prune`` (its cost
grows with the history). It keeps its state in the trials' ``completed_rung_<n>`` system
attributes; this book holds the same facts in memory, sorted, and reads only the attributes
written since its last look (by this or any other API process) before each decision. A decision
is the one Optuna's successive halving makes on the same attributes (see
``tests/unit/test_hyperband_book.py``).

Rows that another transaction commits late, with an id below one already read, are caught by
re-reading a window of the last ``LATE_COMMIT_WINDOW`` ids (attribute ids already counted are
skipped). That happens on PostgreSQL, where concurrent transactions take ids from a sequence
and commit in any order. SQLite has no such rows: it runs one writing transaction at a time,
over the whole database, and gives a new row the largest id plus one, so a row committed later
has a larger id than every row committed before it (rung rows are never deleted while the
study lives). Its book reads past the last id only (``window_for``).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field

from optuna.study import StudyDirection
from sqlalchemy import Connection, text

from service.seeded_hyperband import SeededHyperbandPruner

RUNG_PREFIX = "completed_rung_"
LATE_COMMIT_WINDOW = 256
# CROSS JOIN: SQLite joins in the order written, so the read starts from the attribute ids past
# ``after`` (a primary-key range: the few rows since the last look). With a plain JOIN it chose
# the study's trials first and looked up each one's attributes: a scan of the whole history on
# every report (3.2 ms at 10,000 trials against 0.09 ms). PostgreSQL plans it as any join.
_NEW_RUNG_ROWS = text(
    "SELECT a.trial_system_attribute_id, a.trial_id, t.number, a.key, a.value_json "
    "FROM trial_system_attributes a CROSS JOIN trials t "
    "WHERE t.trial_id = a.trial_id AND t.study_id = :study_id "
    "AND a.trial_system_attribute_id > :after AND a.key LIKE 'completed_rung_%'"
)


@dataclass
class StudyRungs:
    """One study's rungs: values per (bracket, rung), sorted; completed rungs per trial."""

    seen_ids: set[int] = field(default_factory=set)
    last_id: int = 0
    values: dict[tuple[int, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    completed: dict[int, set[int]] = field(default_factory=lambda: defaultdict(set))

    def add(self, attribute_id: int, trial_id: int, bracket: int, rung: int, value: float) -> None:
        """Count one trial's completed rung (once)."""
        if attribute_id in self.seen_ids:
            return
        self.seen_ids.add(attribute_id)
        self.last_id = max(self.last_id, attribute_id)
        if rung in self.completed[trial_id]:
            return
        self.completed[trial_id].add(rung)
        bisect.insort(self.values[(bracket, rung)], value)

    def current_rung(self, trial_id: int) -> int:
        """The first rung the trial has not completed (Optuna's ``_get_current_rung``)."""
        done = self.completed.get(trial_id, set())
        rung = 0
        while rung in done:
            rung += 1
        return rung


@dataclass(frozen=True)
class Decision:
    """Whether to prune, and the rungs (rung → value) the trial completes with this report;
    kept, the step of its next rung: no report before that step can prune it (``None``: no
    later report can; required, since a worker takes ``None`` as leave to send every later
    report without waiting)."""

    prune: bool
    new_rungs: dict[int, float]
    next_rung_step: int | None


class HyperbandBook:
    """The rungs of every study this API process has seen, refreshed from the database."""

    def __init__(self, late_commit_window: int = LATE_COMMIT_WINDOW) -> None:
        """``late_commit_window``: how many ids below the last one read are read again."""
        self._studies: dict[int, StudyRungs] = {}
        self._guard = threading.Lock()
        self._window = late_commit_window

    def refresh(
        self, connection: Connection, study_id: int, pruner: SeededHyperbandPruner
    ) -> StudyRungs:
        """Read the rung attributes written since the last look; the study's rungs."""
        with self._guard:
            rungs = self._studies.setdefault(study_id, StudyRungs())
            after = max(0, rungs.last_id - self._window)
        rows = connection.execute(_NEW_RUNG_ROWS, {"study_id": study_id, "after": after}).all()
        with self._guard:
            for attribute_id, trial_id, number, key, value_json in rows:
                if attribute_id in rungs.seen_ids:  # the window re-reads rows already counted
                    continue
                rung = int(key[len(RUNG_PREFIX) :])
                bracket = pruner.bracket_of(number)
                rungs.add(attribute_id, trial_id, bracket, rung, float(json.loads(value_json)))
        return rungs

    def decide(
        self,
        rungs: StudyRungs,
        pruner: SeededHyperbandPruner,
        bracket: int,
        trial_id: int,
        step: int,
        value: float,
        direction: StudyDirection,
        completed_unread: int = 0,
    ) -> Decision:
        """What Optuna's successive halving in ``bracket`` decides for ``value`` at ``step``;
        ``completed_unread``: rungs the trial completed that the book has not read yet (earlier
        reports of the same uncommitted batch)."""
        new_rungs: dict[int, float] = {}
        with self._guard:
            rung = rungs.current_rung(trial_id) + completed_unread
            while step >= pruner.rung_step(bracket, rung):
                new_rungs[rung] = value
                others = rungs.values.get((bracket, rung), [])
                if not _promotable(value, others, pruner.reduction_factor, direction):
                    return Decision(True, new_rungs, None)
                rung += 1
        return Decision(False, new_rungs, pruner.rung_step(bracket, rung))

    def forget(self, study_id: int) -> None:
        """Drop a study's rungs (it was deleted)."""
        with self._guard:
            self._studies.pop(study_id, None)


def _promotable(
    value: float, others: list[float], reduction_factor: int, direction: StudyDirection
) -> bool:
    """Optuna's ``_is_trial_promotable_to_next_rung`` on ``others + [value]``, ``others`` sorted."""
    count = len(others) + 1
    index = max(count // reduction_factor - 1, 0)
    if direction == StudyDirection.MAXIMIZE:
        position = count - 1 - index  # the (index+1)-th largest
        return value >= _kth(others, value, position)
    return value <= _kth(others, value, index)


def _kth(others: list[float], value: float, k: int) -> float:
    """The ``k``-th smallest (from 0) of ``others`` with ``value`` inserted, without copying."""
    at = bisect.bisect_left(others, value)
    if k < at:
        return others[k]
    if k == at:
        return value
    return others[k - 1]


def window_for(dialect: str) -> int:
    """The late-commit window a database needs: none on SQLite (one writer at a time, ids
    rising in commit order), ``LATE_COMMIT_WINDOW`` elsewhere."""
    return 0 if dialect == "sqlite" else LATE_COMMIT_WINDOW
