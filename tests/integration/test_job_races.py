"""A study job deleted (with its study) while a worker's request about it is half done: the
request is told the job is gone (404, SQLite) or the deletion waits for it (PostgreSQL), never an error of the
storage layer (the API's 500)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from service.errors import NotFound
from service.job_store import JobKind, JobState, JobStore
from service.storage.database import Database

pytestmark = pytest.mark.integration
STUDY_ID = 11  # jobs alone: no study row is needed


def test_a_job_deleted_while_it_is_being_started_is_refused_or_waited_for(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = JobStore(database)
    job, _ = jobs.add(STUDY_ID, JobKind.PREFLIGHT, "", {}, wait_s=60)
    read = JobStore._locked
    deletion = threading.Thread(target=jobs.delete_study, args=(STUDY_ID,))
    holds_row = database.dialect == "postgresql"

    def read_then_delete(session: Any, job_id: int) -> Any:
        found = read(session, job_id)
        deletion.start()  # SQLite: it commits now; PostgreSQL: it waits for the held row
        deletion.join(timeout=1.0 if holds_row else 30)
        assert deletion.is_alive() == holds_row
        return found

    monkeypatch.setattr(JobStore, "_locked", staticmethod(read_then_delete))
    if holds_row:
        assert jobs.start(job.job_id, lease_s=60).state == JobState.RUNNING
    else:
        with pytest.raises(NotFound, match="deleted by another request"):
            jobs.start(job.job_id, lease_s=60)
    deletion.join(timeout=30)
    assert not deletion.is_alive()
    assert jobs.of_study(STUDY_ID) == []
