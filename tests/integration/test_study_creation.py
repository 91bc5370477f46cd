"""A study's creation is all or nothing for its client, on SQLite and PostgreSQL: where a write
fails part way (a trigger refuses it, standing for an outage: ``tests/support/refusals.py``), the
error comes back, no part of the study stays (neither its record, nor Optuna's study holding the
name, nor part of a warm start), and the same request made again creates it. While it is made,
it is held: a reaper tick starts none of its trials before its enqueued ones are written."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event, select

from service.errors import Conflict
from service.job_store import JobStore
from service.lease_reaper import STALLED_CREATION
from service.preflight import JOB_TIMED_OUT
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import StudyRecord
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.dispatchers import DoNothingDispatcher
from tests.support.killed_creation import KILLED
from tests.support.refusals import REFUSAL, inserts_refused

pytestmark = pytest.mark.integration


@pytest.fixture
def tuner(database: Database) -> Tuner:
    return Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed())


def spec(name: str, **extra: Any) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": name,
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "sampler": {"name": "random", "seed": 1},
            "budget": {"n_trials": 6, "max_concurrent_trials": 2},
            **extra,
        }
    )


def causes(error: BaseException | None) -> str:
    """The messages of an error and of the errors it was raised from (Optuna wraps the
    database's)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__ or error.__context__
    return " / ".join(messages)


def assert_no_study_named(tuner: Tuner, database: Database, name: str) -> None:
    assert name not in [view.name for view in tuner.studies()]
    assert name not in optuna.get_all_study_names(storage=database.optuna)


def test_a_creation_whose_enqueued_trials_are_refused_leaves_nothing_and_can_be_made_again(
    tuner: Tuner, database: Database
) -> None:
    name = f"enqueue-{uuid.uuid4().hex[:8]}"
    asked = spec(name, enqueue=[{"x": 0.25}, {"x": 0.75}])
    with inserts_refused(database, "trial_system_attributes", "NEW.key = 'fixed_params'"):
        with pytest.raises(Exception) as refused:
            tuner.create_study(asked)
        assert REFUSAL in causes(refused.value)
        assert_no_study_named(tuner, database, name)
    created = tuner.create_study(asked)
    assert created.name == name


def test_a_warm_start_copied_part_way_leaves_nothing_and_can_be_made_again(
    tuner: Tuner, database: Database
) -> None:
    source = tuner.create_study(spec(f"source-{uuid.uuid4().hex[:8]}"))
    values = []
    for _ in range(3):
        trial = tuner.ask(source.study_id)
        values.append(trial.params["x"])
        tuner.complete(trial.trial_id, TrialState.COMPLETE, values[-1], None, trial.lease)
    name = f"warm-{uuid.uuid4().hex[:8]}"
    asked = spec(name, warm_start={"study_id": source.study_id})
    second_copy = f"NEW.value = {values[1]!r}"  # the first trial is copied, then the second fails
    with inserts_refused(database, "trial_values", second_copy):
        with pytest.raises(Exception) as refused:
            tuner.create_study(asked)
        assert REFUSAL in causes(refused.value)
        assert_no_study_named(tuner, database, name)
    warm = tuner.create_study(asked)
    assert [trial.state for trial in tuner.study_trials(warm.study_id)] == ["complete"] * 3


def test_a_reaper_tick_while_a_study_is_made_starts_none_of_its_trials(
    tuner: Tuner, database: Database
) -> None:
    asked = spec(
        f"made-{uuid.uuid4().hex[:8]}",
        space={"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        trainer={"name": "mlp", "dataset": "wine", "epochs": 1},
        preflight={"enabled": False},
        enqueue=[{"lr": 0.01}],
    )
    ticks: list[tuple[str | None, list[int]]] = []

    def tick_before_the_enqueued_trial(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not ticks and statement.lstrip().startswith("INSERT INTO trials"):
            ticks.append(reaper_tick(tuner, database, asked.name))

    optuna_engine = database.optuna._backend.engine  # type: ignore[attr-defined]  # Optuna's own
    event.listen(optuna_engine, "before_cursor_execute", tick_before_the_enqueued_trial)
    try:
        created = tuner.create_study(asked)
    finally:
        event.remove(optuna_engine, "before_cursor_execute", tick_before_the_enqueued_trial)
    assert ticks == [("preparing", [])]  # the study was held: the tick started nothing
    trials = tuner.study_trials(created.study_id)
    assert trials[0].params == {"lr": 0.01}  # the enqueued trial runs first, as asked
    assert [trial.state for trial in trials] == ["running", "running"]


def reaper_tick(tuner: Tuner, database: Database, name: str) -> tuple[str | None, list[int]]:
    """A reaper tick from another thread, as another API process's would run: the state the
    study named ``name`` had (read from the service's table: Optuna's, mid-write, are not read
    here), and the trials the tick failed (a tick that does not end within 10 s waits on the
    creation's transaction: it was writing to the study)."""
    query = select(StudyRecord.state).where(StudyRecord.study_name == name)
    with database.engine.connect() as connection:
        state = connection.execute(query).scalar()
    failed: list[list[int]] = []
    ticking = threading.Thread(target=lambda: failed.append(tuner.expire_leases()), daemon=True)
    ticking.start()
    ticking.join(timeout=10)
    assert not ticking.is_alive(), "the tick waited on the study being made"
    return state, failed[0]


def held_spec(name: str) -> StudySpec:
    """A study of a built-in trainer whose pre-flight checks must pass before its trials start
    (no worker runs them here: their job waits until it times out)."""
    return spec(
        name,
        space={"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        trainer={"name": "mlp", "dataset": "wine", "epochs": 1},
        preflight={"refuse_on_failure": True},
    )


def test_a_study_held_for_its_checks_is_preparing_and_only_a_stop_changes_it(
    tuner: Tuner,
) -> None:
    held = tuner.create_study(held_spec(f"held-{uuid.uuid4().hex[:8]}"))
    stopped = tuner.create_study(held_spec(f"held-{uuid.uuid4().hex[:8]}"))
    assert held.state == stopped.state == "preparing"
    for change in (tuner.pause, tuner.resume):
        with pytest.raises(Conflict) as refused:
            change(held.study_id)
        assert f"study {held.study_id} is preparing" in str(refused.value)
        assert "can be stopped" in str(refused.value)
    assert tuner.study(held.study_id).state == "preparing"
    assert tuner.study_trials(held.study_id) == []
    assert tuner.stop(stopped.study_id).state == "stopped"
    # The checks' job times out (no worker ran it): a held study's trials start anyway (the
    # same tick, two hours on, finds them unclaimed too), but not a stopped one's.
    tuner.expire_leases(datetime.now(UTC) + timedelta(hours=2))
    assert tuner.study(held.study_id).state == "running"
    assert tuner.study_trials(held.study_id) != []
    assert tuner.study(stopped.study_id).state == "stopped"
    assert tuner.study_trials(stopped.study_id) == []


def test_a_creation_killed_part_way_is_taken_back_by_the_reaper(
    tuner: Tuner, database: Database, database_url: str
) -> None:
    name = f"killed-{uuid.uuid4().hex[:8]}"
    asked = spec(name, enqueue=[{"x": 0.25}])
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.killed_creation",
            database_url,
            asked.model_dump_json(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == KILLED, run.stderr
    (killed,) = [view for view in tuner.studies() if view.name == name]
    assert killed.state == "preparing"
    waiting = tuner.create_study(held_spec(f"waiting-{uuid.uuid4().hex[:8]}"))
    tuner.expire_leases(datetime.now(UTC) + timedelta(minutes=5))  # it may still be being made
    assert tuner.study(killed.study_id).state == "preparing"
    tuner.expire_leases(datetime.now(UTC) + STALLED_CREATION + timedelta(minutes=1))
    assert_no_study_named(tuner, database, name)
    # A study that waits on its pre-flight checks is not a stalled creation.
    assert tuner.study(waiting.study_id).state == "preparing"
    made = tuner.create_study(asked)  # the request made again finds the name free
    assert made.state == "running"
    assert tuner.ask(made.study_id).params == {"x": 0.25}  # its enqueued trial first


def test_a_study_stopped_while_it_is_made_is_taken_back_and_its_creation_refused(
    tuner: Tuner, database: Database
) -> None:
    """A stop that comes before the creation sets the study running (a user's, or the reaper's
    of a creation slower than ``STALLED_CREATION``): the creation does not answer a study that
    will never run; it is refused, and the study taken back."""
    name = f"stopped-{uuid.uuid4().hex[:8]}"
    asked = spec(name, enqueue=[{"x": 0.25}])
    stops: list[str] = []

    def stop(study_id: int) -> None:
        stops.append(tuner.stop(study_id).state)

    def stop_before_the_enqueued_trial(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not stops and statement.lstrip().startswith("INSERT INTO trials"):
            query = select(StudyRecord.study_id).where(StudyRecord.study_name == name)
            with database.engine.connect() as connection:
                study_id = connection.execute(query).scalar_one()
            # From another thread, as another request would (Optuna's sessions are per thread).
            stopping = threading.Thread(target=stop, args=(study_id,), daemon=True)
            stopping.start()
            stopping.join(timeout=10)
            assert not stopping.is_alive(), "the stop waited on the study being made"

    optuna_engine = database.optuna._backend.engine  # type: ignore[attr-defined]  # Optuna's own
    event.listen(optuna_engine, "before_cursor_execute", stop_before_the_enqueued_trial)
    try:
        with pytest.raises(Conflict) as refused:
            tuner.create_study(asked)
    finally:
        event.remove(optuna_engine, "before_cursor_execute", stop_before_the_enqueued_trial)
    assert stops == ["stopped"]
    assert "was stopped while it was made" in str(refused.value)
    assert_no_study_named(tuner, database, name)
    assert tuner.create_study(asked).state == "running"


def test_checks_whose_end_did_not_move_their_held_study_are_acted_on_by_the_reaper(
    tuner: Tuner, database: Database
) -> None:
    held = tuner.create_study(held_spec(f"held-{uuid.uuid4().hex[:8]}"))
    preflight = tuner.study(held.study_id).preflight
    assert preflight is not None
    # The job's end written, the study's move not (the database lost between the two): the
    # job's store alone records it.
    JobStore(database).finish(preflight.job_id, None, f"{JOB_TIMED_OUT}: no worker finished it")
    assert tuner.study(held.study_id).state == "preparing"
    tuner.expire_leases(datetime.now(UTC) + STALLED_CREATION + timedelta(minutes=1))
    assert tuner.study(held.study_id).state == "running"  # not deleted as a stalled creation


def test_each_partly_enqueued_configuration_draws_its_own_values(tuner: Tuner) -> None:
    """With a seed, the sampler was seeded by the trials in all, the waiting ones counted: every
    enqueued trial, and the first after them, drew the same ``y``."""
    space = {
        "x": {"type": "float", "low": 0, "high": 1},
        "y": {"type": "float", "low": 0, "high": 1},
    }
    asked = spec(
        f"partial-{uuid.uuid4().hex[:8]}",
        space=space,
        enqueue=[{"x": 0.25}, {"x": 0.5}, {"x": 0.75}],
        budget={"n_trials": 4, "max_concurrent_trials": 4},
    )
    made = tuner.create_study(asked)
    drawn = [tuner.ask(made.study_id).params for _ in range(4)]
    assert [params["x"] for params in drawn[:3]] == [0.25, 0.5, 0.75]
    assert len({params["y"] for params in drawn}) == 4


def test_a_seeded_grid_runs_every_point_once(tuner: Tuner) -> None:
    """Each trial's sampler shuffled the grid by a seed of its own (seed + trials so far), and
    trial k took the k-th point of its shuffle: 4 distinct points of 6, one of them three times."""
    asked = spec(
        f"grid-{uuid.uuid4().hex[:8]}",
        space={
            "a": {"type": "categorical", "choices": [1, 2, 3]},
            "b": {"type": "categorical", "choices": [10, 20]},
        },
        sampler={"name": "grid", "seed": 3},
        budget={"max_concurrent_trials": 6},
    )
    made = tuner.create_study(asked)
    points = {
        (params["a"], params["b"]) for params in (tuner.ask(made.study_id).params for _ in range(6))
    }
    assert points == {(a, b) for a in (1, 2, 3) for b in (10, 20)}
