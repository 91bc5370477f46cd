"""Study jobs under requests at once: a job deleted (with its study) while a worker starts it is
waited for or found gone (404), never an error of the storage layer (the API's 500); of two
outcomes at once (a worker's result and the timeout) exactly one is stored, whole; a job its
worker renewed after the reaper found it past its time runs on."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from service import job_store
from service.dispatch import TrialAssignment
from service.errors import NotFound
from service.job_store import JobKind, JobState, JobStore
from service.jobs import JobMessage
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import utc_now
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.threads import at_once

pytestmark = pytest.mark.integration
STUDY_ID = 11  # jobs alone: no study row is needed


def test_a_job_deleted_while_it_is_being_started_waits_for_the_start(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = JobStore(database)
    job, _ = jobs.add(STUDY_ID, JobKind.PREFLIGHT, "", {}, wait_s=60)
    update_if_live = job_store._update_if_live
    deletion = threading.Thread(target=jobs.delete_study, args=(STUDY_ID,))

    def update_then_delete(session: Session, job_id: int, values: dict[str, Any]) -> bool:
        updated = update_if_live(session, job_id, values)
        deletion.start()  # the start's write holds the row (PostgreSQL) or the writer (SQLite)
        deletion.join(timeout=1.0)
        assert deletion.is_alive()
        return updated

    monkeypatch.setattr(job_store, "_update_if_live", update_then_delete)
    assert jobs.start(job.job_id, lease_s=60).state == JobState.RUNNING
    deletion.join(timeout=30)
    assert not deletion.is_alive()
    assert jobs.of_study(STUDY_ID) == []


def test_a_job_deleted_before_it_is_started_is_not_found(database: Database) -> None:
    jobs = JobStore(database)
    job, _ = jobs.add(STUDY_ID, JobKind.PREFLIGHT, "", {}, wait_s=60)
    jobs.delete_study(STUDY_ID)
    for call in (
        lambda: jobs.start(job.job_id, lease_s=60),
        lambda: jobs.finish(job.job_id, None, "timed out"),
    ):
        with pytest.raises(NotFound, match=f"no job with id {job.job_id}"):
            call()


def test_of_a_result_and_a_timeout_at_once_one_is_stored_whole(database: Database) -> None:
    jobs = JobStore(database)
    for round_number in range(10):
        job, _ = jobs.add(STUDY_ID, JobKind.PREFLIGHT, str(round_number), {}, wait_s=60)
        firsts: list[bool] = []
        at_once(
            lambda j=job.job_id, f=firsts: f.append(jobs.finish(j, {"checks": []}, None)[1]),
            lambda j=job.job_id, f=firsts: f.append(jobs.finish(j, None, "timed out")[1]),
        )
        assert sorted(firsts) == [False, True]
        stored = jobs.get(job.job_id)
        if stored.state == JobState.DONE:
            assert (stored.result, stored.reason) == ({"checks": []}, None)
        else:
            assert (stored.state, stored.result, stored.reason) == (
                JobState.FAILED,
                None,
                "timed out",
            )


def test_a_timeout_finding_the_job_renewed_since_it_was_read_leaves_it_running(
    database: Database,
) -> None:
    jobs = JobStore(database)
    job, _ = jobs.add(STUDY_ID, JobKind.PREFLIGHT, "renewed", {}, wait_s=60)
    found_expired = utc_now() + timedelta(seconds=120)  # the timeout read it past its time
    jobs.start(job.job_id, lease_s=600)  # then its worker renewed it
    stored, first = jobs.finish(job.job_id, None, "timed out", expired_before=found_expired)
    assert not first
    assert (stored.state, stored.reason) == (JobState.RUNNING, None)
    past_the_renewal = utc_now() + timedelta(seconds=700)
    stored, first = jobs.finish(job.job_id, None, "timed out", expired_before=past_the_renewal)
    assert first and (stored.state, stored.reason) == (JobState.FAILED, "timed out")


class NoWorkerDispatcher:
    """Takes trials and study jobs, and runs none."""

    def dispatch(self, assignment: TrialAssignment) -> None:
        """Drop the trial."""

    def dispatch_job(self, message: JobMessage) -> None:
        """Drop the job."""


def test_the_reaper_leaves_running_a_job_renewed_after_it_found_it_expired(
    database: Database,
) -> None:
    tuner = Tuner(database, NoWorkerDispatcher(), TrainerCatalog.installed())
    spec = StudySpec.model_validate(
        {
            "name": f"renewed-{uuid.uuid4().hex[:8]}",
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 1},
        }
    )
    study = tuner.create_study(spec)
    preflight = tuner.jobs.preflight(study.study_id)
    assert preflight is not None
    job_id = preflight.job_id
    later = utc_now() + timedelta(hours=2)  # past the job's wait for a worker

    def renew() -> None:
        JobStore(database).start(job_id, lease_s=24 * 3600)

    with renewed_once_read(database, renew):
        assert tuner.jobs.expire(later) == []
    assert JobStore(database).get(job_id).state == JobState.RUNNING
    assert tuner.jobs.expire(later + timedelta(days=2)) == [job_id]


@contextmanager
def renewed_once_read(database: Database, renew: Callable[[], object]) -> Iterator[None]:
    """Run ``renew`` once, right after the reaper's read of the jobs past their time."""
    done: list[bool] = []

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sql = statement.lstrip()
        if (
            not done
            and sql.startswith("SELECT")
            and "hpo_study_jobs" in sql
            and "expires_at <" in sql
        ):
            done.append(True)
            renew()

    event.listen(database.engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(database.engine, "after_cursor_execute", after)
    assert done, "the reaper read no job past its time"
