"""Deleting a study: its ids are not handed out again (SQLite reused the highest ones), on both
databases, and an SQLite database made before this release is rebuilt in place, its rows kept; a
worker's completion after the delete began is refused; two deletes at once, or one cut short,
leave a clean end (404, a delete that can be made again) and every other study's leases expiring."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

from service.dispatch import NoDispatcher
from service.errors import Conflict, NotFound
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.sqlite_ids import ID_TABLES
from service.storage.tables import TrialLeaseRecord
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner

pytestmark = pytest.mark.integration


def external_spec() -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"ids-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )


@pytest.fixture
def tuner(database_url: str) -> Iterator[Tuner]:
    database = Database(database_url)
    yield Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    database.dispose()


def test_a_completion_after_the_delete_took_the_leases_is_refused(tuner: Tuner) -> None:
    study = tuner.create_study(external_spec())
    trial = tuner.ask(study.study_id)
    tuner.trials.leases.release_study(study.study_id)  # the delete's first step, committed
    for end in (
        lambda: tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None, trial.lease),
        lambda: tuner.report(trial.trial_id, 1, 0.5, trial.lease),
    ):
        with pytest.raises(Conflict, match="holds no lease"):
            end()
    assert tuner.study(study.study_id).counts["running"] == 1  # nothing written: the delete goes on
    tuner.delete(study.study_id)
    with pytest.raises(NotFound):
        tuner.study(study.study_id)


def test_of_two_deletes_at_once_one_deletes_and_the_other_finds_nothing(tuner: Tuner) -> None:
    study = tuner.create_study(external_spec())
    tuner.ask(study.study_id)
    answers: list[str] = []

    def delete() -> None:
        try:
            tuner.delete(study.study_id)
            answers.append("deleted")
        except NotFound:
            answers.append("not found")

    with tuner.trials.locks.hold(study.study_id):  # both get past the first look, then wait
        deletes = [threading.Thread(target=delete) for _ in range(2)]
        for thread in deletes:
            thread.start()
        time.sleep(0.5)
    for thread in deletes:
        thread.join(timeout=30)
    assert sorted(answers) == ["deleted", "not found"]


def test_a_delete_cut_short_leaves_the_reaper_working_and_can_be_made_again(tuner: Tuner) -> None:
    cut_short = tuner.create_study(external_spec())
    tuner.ask(cut_short.study_id)
    other = tuner.create_study(external_spec())
    silent = tuner.ask(other.study_id)
    tuner.trials.leases.release_study(cut_short.study_id)
    tuner._storage.delete_study(cut_short.study_id)  # Optuna's part done, the process then lost

    listed = [view.study_id for view in tuner.studies()]
    assert other.study_id in listed and cut_short.study_id not in listed
    later = datetime.now(UTC) + timedelta(seconds=tuner.lease_ttl_s + 5)
    assert tuner.expire_leases(later) == [silent.trial_id]  # the broken study stops nothing

    tuner.delete(cut_short.study_id)
    with pytest.raises(NotFound):
        tuner.delete(cut_short.study_id)


def test_a_late_completion_of_a_deleted_study_reaches_no_new_trial(database_url: str) -> None:
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    try:
        deleted = tuner.create_study(external_spec())
        old_trial = tuner.ask(deleted.study_id)
        tuner.delete(deleted.study_id)

        new = tuner.create_study(external_spec())
        new_trial = tuner.ask(new.study_id)
        assert new.study_id > deleted.study_id
        assert new_trial.trial_id > old_trial.trial_id
        with pytest.raises(NotFound):
            tuner.complete(old_trial.trial_id, TrialState.COMPLETE, 0.5, None)
        assert tuner.study(new.study_id).counts["running"] == 1
    finally:
        database.dispose()


def test_an_older_sqlite_database_is_rebuilt_with_its_rows_and_indexes(
    new_database_url: Callable[[str], str],
) -> None:
    url = new_database_url("sqlite")
    older = optuna.create_study(study_name="older", storage=url)  # Optuna's tables, as before
    for x in (0.1, 0.2, 0.3):
        older.enqueue_trial({"x": x})
        trial = older.ask()
        older.tell(trial, trial.suggest_float("x", 0, 1))
    path = Path(url.removeprefix("sqlite:///"))
    indexes_before = _indexes(path)

    database = Database(url)
    try:
        schema = dict(_tables(path))
        for table in ID_TABLES:
            assert "AUTOINCREMENT" in schema[table], table
        assert indexes_before <= _indexes(path)
        kept = optuna.load_study(study_name="older", storage=database.optuna)
        assert [trial.value for trial in kept.trials] == [0.1, 0.2, 0.3]
        assert [trial.params["x"] for trial in kept.trials] == [0.1, 0.2, 0.3]

        tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
        newest = tuner.create_study(external_spec())
        last_trial = tuner.ask(newest.study_id).trial_id
        tuner.delete(newest.study_id)
        after = tuner.create_study(external_spec())
        assert after.study_id > newest.study_id
        assert tuner.ask(after.study_id).trial_id > last_trial
    finally:
        database.dispose()
    Database(url).dispose()  # a second start finds the tables rebuilt and leaves them
    assert dict(_tables(path)) == schema


def _tables(path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        return {
            sql
            for (sql,) in connection.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        }


def test_a_delete_a_trials_new_row_breaks_leaves_the_study_stopped(
    new_database_url: Callable[[str], str],
) -> None:
    """PostgreSQL: a row written for one of the study's trials while Optuna deletes it (Optuna's
    delete swallows the foreign key's refusal). The delete answers 409 and the study is stopped:
    not running without its leases, where the reaper would run its trials again."""
    database = Database(new_database_url("postgresql"))
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    study = tuner.create_study(external_spec())
    trial = tuner.ask(study.study_id)
    outcome: list[BaseException | None] = []

    def delete() -> None:
        try:
            tuner.delete(study.study_id)
            outcome.append(None)
        except Conflict as refused:
            outcome.append(refused)

    with database.engine.connect() as writer:
        with writer.begin():  # a value written meanwhile: the trial's row is held for its key
            writer.execute(
                text(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) "
                    "VALUES (:trial_id, 0, 0.5, 'FINITE')"
                ),
                {"trial_id": trial.trial_id},
            )
            deleting = threading.Thread(target=delete)
            deleting.start()
            deleting.join(timeout=1.0)
            assert deleting.is_alive()  # Optuna's delete of the trial waits for the value's row
        deleting.join(timeout=30)
    [refused] = outcome
    assert refused is not None and "delete it again" in str(refused)
    assert tuner.study(study.study_id).state == "stopped"
    later = datetime.now(UTC) + timedelta(seconds=tuner.lease_ttl_s + 5)
    tuner.expire_leases(later)  # a stopped study's trials are not taken up again
    with database.session() as session:
        assert session.get(TrialLeaseRecord, trial.trial_id) is None
    tuner.delete(study.study_id)
    with pytest.raises(NotFound):
        tuner.study(study.study_id)
    database.dispose()
