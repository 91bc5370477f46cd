"""Study jobs under requests at once: a job deleted (with its study) while a worker starts it is
waited for or found gone (404), never an error of the storage layer (the API's 500); of two
outcomes at once (a worker's result and the timeout) exactly one is stored, whole."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy.orm import Session

from service import job_store
from service.errors import NotFound
from service.job_store import JobKind, JobState, JobStore
from service.storage.database import Database
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
