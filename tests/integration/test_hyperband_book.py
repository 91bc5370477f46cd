"""The report path's Hyperband (in-memory rung book, one transaction) decides as Optuna's
HyperbandPruner does on the same history.

Two studies of one spec, on one real database: one driven through
:class:`service.report_path.HyperbandReports`, the other through Optuna's ``trial.report()`` +
``should_prune()``. The same trials report the same values at the same steps, interleaved as
concurrent workers would, and every decision must match.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import optuna
import pytest
from sqlalchemy import Connection, text

from service.errors import Unavailable
from service.hyperband_book import _NEW_RUNG_ROWS, HyperbandBook, window_for
from service.leases import LeaseStore, LeaseTimes
from service.policies import build_pruner
from service.report_path import HyperbandReports
from service.spec.study_spec import StudySpec
from service.storage.database import Database

pytestmark = pytest.mark.integration


def _spec(direction: str, reduction_factor: int) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": "book",
            "direction": direction,
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "sampler": {"name": "random", "seed": 7},
            "pruner": {
                "name": "hyperband",
                "min_resource": 1,
                "max_resource": 27,
                "reduction_factor": reduction_factor,
            },
        }
    )


def _curves(seed: int, n_trials: int) -> list[list[float]]:
    """Per trial, a noisy decreasing curve with ties (rounded values) to test ordering."""
    rng = random.Random(seed)
    curves = []
    for _ in range(n_trials):
        level, slope = rng.random(), rng.random()
        curves.append(
            [round(level + slope / step + rng.gauss(0, 0.05), 2) for step in range(1, 28)]
        )
    return curves


@pytest.mark.parametrize(
    ("direction", "reduction_factor", "batch"),
    [("minimize", 3, 1), ("maximize", 2, 1), ("minimize", 3, 4), ("maximize", 2, 5)],
)
def test_decisions_match_optuna(
    database_url: str,
    direction: Literal["minimize", "maximize"],
    reduction_factor: int,
    batch: int,
) -> None:
    """``batch`` > 1: each turn a worker sends 1 to ``batch`` reports in one call (as a worker's
    held reports go together), against Optuna's one report and one check at a time."""
    database = Database(database_url)
    spec = _spec(direction, reduction_factor)
    leases = LeaseStore(database, LeaseTimes(ttl_s=60, dispatch_timeout_s=60))
    reports = HyperbandReports(database, leases)
    ours = optuna.create_study(study_name="ours", storage=database.optuna, direction=direction)
    theirs = optuna.create_study(
        study_name="theirs", storage=database.optuna, direction=direction, pruner=build_pruner(spec)
    )
    curves = _curves(seed=reduction_factor, n_trials=60)
    decisions_ours, decisions_theirs = [], []
    # Four "workers": trials start in order and report interleaved, round robin.
    pending = list(range(len(curves)))
    running: list[tuple[int, optuna.Trial, optuna.Trial, int]] = []
    announced: dict[int, int] = {}  # trial index → the next step its answers named
    turns = random.Random(batch)
    while pending or running:
        while pending and len(running) < 4:
            index = pending.pop(0)
            mine, other = ours.ask(), theirs.ask()
            leases.grant(mine._trial_id, ours._study_id, attempt=0, claim="test")
            running.append((index, mine, other, 1))
        index, mine, other, step = running.pop(0)
        last = min(27, step + turns.randint(1, batch) - 1)
        sent = [(at, curves[index][at - 1]) for at in range(step, last + 1)]
        decided = reports.report(ours._study_id, spec, mine._trial_id, sent, None)
        assert decided is not None
        decision, recorded = decided
        ours_prune, ours_step = decision.prune, sent[recorded - 1][0]
        # No report before the step the previous answer named can prune (the workers rely on it).
        assert not ours_prune or ours_step >= announced.get(index, 1)
        if decision.next_rung_step is not None:
            assert decision.next_rung_step > ours_step
            announced[index] = decision.next_rung_step
        theirs_prune = False
        for theirs_step, value in sent:
            other.report(value, theirs_step)
            theirs_prune = other.should_prune()
            if theirs_prune:
                break
        decisions_ours.append((index, ours_step, ours_prune))
        decisions_theirs.append((index, theirs_step, theirs_prune))
        if ours_prune or theirs_prune or last == 27:
            state = optuna.trial.TrialState.PRUNED if theirs_prune else None
            theirs.tell(other, state=state) if state else theirs.tell(other, value)
            if not ours_prune:  # a prune ended ours, and its lease, in the reports' transaction
                ours.tell(mine, state=state) if state else ours.tell(mine, value)
                leases.release(mine._trial_id)
        else:
            running.append((index, mine, other, last + 1))
    assert decisions_ours == decisions_theirs
    assert leases.leased_trials(ours._study_id) == set()  # every trial's lease ended with it
    assert any(prune for _, _, prune in decisions_ours)  # the comparison covered prunings
    assert any(step == 27 for _, step, _ in decisions_ours)  # and promotions to the end
    # The same values and rungs were written (a batch completes each rung once, in order).
    for mine_done, other_done in zip(ours.get_trials(), theirs.get_trials(), strict=True):
        assert mine_done.intermediate_values == other_done.intermediate_values
        # A pruned trial ends as Optuna's tell ends it: its last reported value as its value.
        assert (mine_done.state, mine_done.values) == (other_done.state, other_done.values)
        assert _rungs(mine_done) == _rungs(other_done)
    database.dispose()


def _rungs(trial: optuna.trial.FrozenTrial) -> dict[str, object]:
    return {k: v for k, v in trial.system_attrs.items() if k.startswith("completed_rung_")}


def test_the_rung_read_starts_from_the_new_attribute_ids_not_the_history(
    tmp_path: Path,
) -> None:
    """SQLite's plan for the book's refresh: a primary-key range of attribute ids, then each
    row's trial by its key; never every trial of the study (a cost that grew with the history)."""
    database = Database(f"sqlite:///{tmp_path}/plan.db")
    optuna.create_study(study_name="plan", storage=database.optuna)
    with database.engine.connect() as connection:
        plan = connection.execute(
            text(f"EXPLAIN QUERY PLAN {_NEW_RUNG_ROWS.text}"), {"study_id": 1, "after": 0}
        ).all()
    steps = [row[-1] for row in plan]
    assert "USING INTEGER PRIMARY KEY (rowid>?)" in steps[0], steps
    assert all("study_id" not in step for step in steps), steps


def test_a_rung_committed_after_the_book_read_past_it_is_counted(database_url: str) -> None:
    """Two transactions each write a trial's first rung, and the book reads between their
    commits. On PostgreSQL the one that wrote first commits last: its row has the lower id, and
    the book's window reads it again. SQLite lets one transaction write at a time, so there the
    second writes only after the first committed, and its row has the higher id: the book,
    reading past the last id only, finds it. Either way the book counts both rungs."""
    database = Database(database_url)
    spec = _spec("minimize", 3)
    pruner = build_pruner(spec)
    assert pruner.ready()
    study = optuna.create_study(study_name=spec.name, storage=database.optuna)
    first, second = study.ask()._trial_id, study.ask()._trial_id
    book = HyperbandBook(window_for(database.dialect))
    study_id = study._study_id

    def rungs_counted() -> int:
        with database.engine.connect() as reader:
            rungs = book.refresh(reader, study_id, pruner)
        return sum(len(done) for done in rungs.completed.values())

    with database.engine.connect() as early, database.engine.connect() as late:
        early_writer = early.begin()
        if database.dialect != "sqlite":  # SQLite: no write before the other's commit
            _write_rung(early, first, 0.5)  # its id is taken now, its commit comes last
        with late.begin():
            _write_rung(late, second, 0.2)
        assert rungs_counted() == 1
        if database.dialect == "sqlite":
            _write_rung(early, first, 0.5)
        early_writer.commit()
    assert rungs_counted() == 2
    database.dispose()


def _write_rung(connection: Connection, trial_id: int, value: float) -> None:
    connection.execute(
        text(
            "INSERT INTO trial_system_attributes (trial_id, key, value_json) "
            "VALUES (:trial_id, 'completed_rung_0', :value)"
        ),
        {"trial_id": trial_id, "value": str(value)},
    )


def test_a_rung_the_book_missed_refuses_the_report_once_and_is_then_counted(
    new_database_url: Callable[[str], str],
) -> None:
    """PostgreSQL, a book whose window is too narrow for a late commit: trial X's first rung
    commits after the book read past its id. X's next report would write that rung again: it is
    refused with 503 (not the unique key's 500), and sent again it is decided with every rung."""
    database = Database(new_database_url("postgresql"))
    spec = _spec("minimize", 3)
    leases = LeaseStore(database, LeaseTimes(ttl_s=60, dispatch_timeout_s=60))
    reports = HyperbandReports(database, leases, late_commit_window=0)
    study = optuna.create_study(study_name=spec.name, storage=database.optuna)
    late, other = study.ask()._trial_id, study.ask()._trial_id
    for trial_id in (late, other):
        leases.grant(trial_id, study._study_id, attempt=0, claim="test")
    with database.engine.connect() as pending, database.engine.connect() as committed:
        transaction = pending.begin()
        _write_rung(pending, late, 0.5)  # its id is taken now, its commit comes last
        with committed.begin():
            _write_rung(committed, other, 0.4)
        reports.report(study._study_id, spec, other, [(1, 0.4)], None)  # the book reads past it
        transaction.commit()

    last_step = [(27, 0.45)]  # completes every rung of its bracket: the first one again
    with pytest.raises(Unavailable, match="send the report again"):
        reports.report(study._study_id, spec, late, last_step, None)
    assert reports.report(study._study_id, spec, late, last_step, None) is not None
    with database.engine.connect() as reader:
        keys = reader.execute(
            text("SELECT key FROM trial_system_attributes WHERE trial_id = :t"), {"t": late}
        ).scalars()
        rungs = [key for key in keys if key.startswith("completed_rung_")]
    assert rungs.count("completed_rung_0") == 1 and len(rungs) >= 1
    database.dispose()
