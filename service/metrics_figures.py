"""The service's figures for monitoring, read from the database at the moment they are asked for.

Read from the database rather than counted in memory, they are the same whichever API process
answers a scrape, and survive restarts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select, text

from service.job_store import JobState
from service.leases import EXTERNAL_HOLDER
from service.storage.database import Database
from service.storage.optuna_rows import FAIL_REASON_ATTR
from service.storage.tables import StudyJobRecord, StudyRecord, TrialLeaseRecord
from service.study_store import StudyState

# The lease reaper's reasons (service/lease_reaper.py): a silent holder, or a message never claimed.
LEASE_EXPIRY_REASONS = ("lease expired", "no worker claimed")
TRIAL_STATES = ("running", "waiting", "complete", "pruned", "fail")
# Optuna keeps a system attribute's value as JSON: a reason is a quoted string.
_LEASE_EXPIRIES = text(
    "SELECT COUNT(*) FROM trial_system_attributes WHERE key = :key "
    "AND (value_json LIKE :silent OR value_json LIKE :unclaimed)"
)
_LEASE_EXPIRY_PATTERNS = {
    "key": FAIL_REASON_ATTR,
    "silent": json.dumps(LEASE_EXPIRY_REASONS[0])[:-1] + "%",
    "unclaimed": json.dumps(LEASE_EXPIRY_REASONS[1])[:-1] + "%",
}


@dataclass(frozen=True)
class ServiceFigures:
    """Studies and trials by state, leases expired so far, and worker processes running a trial."""

    studies_by_state: dict[str, int]
    trials_by_state: dict[str, int]
    leases_expired: int
    busy_workers: int
    jobs_running: int = 0  # study jobs (the vault's, ensembles) a worker runs now


def read_figures(database: Database, now: datetime | None = None) -> ServiceFigures:
    """The figures as the database holds them now (every state present, 0 where none)."""
    with database.engine.connect() as connection:
        studies = connection.execute(
            select(StudyRecord.state, func.count()).group_by(StudyRecord.state)
        ).all()
        trials = connection.execute(text("SELECT state, COUNT(*) FROM trials GROUP BY state")).all()
        expired = connection.execute(_LEASE_EXPIRIES, _LEASE_EXPIRY_PATTERNS).scalar_one()
        holders = connection.execute(_live_holders_query(now or datetime.now(UTC))).scalars()
        busy = {_process_of(h) for h in holders if h and h != EXTERNAL_HOLDER}
        jobs = connection.execute(_running_jobs_query(now or datetime.now(UTC))).scalar_one()
    return ServiceFigures(
        studies_by_state={state.value: 0 for state in StudyState} | _counted(studies),
        trials_by_state=dict.fromkeys(TRIAL_STATES, 0) | _counted(trials),
        leases_expired=int(expired),
        busy_workers=len(busy),
        jobs_running=int(jobs),
    )


def _running_jobs_query(now: datetime) -> Select[int]:
    """How many study jobs a worker has started and renews: each holds a worker process."""
    return select(func.count()).where(
        StudyJobRecord.state == JobState.RUNNING.value, StudyJobRecord.expires_at > now
    )


def _live_holders_query(now: datetime) -> Select[str | None]:
    """The holders of the claimed leases that have not expired: trials being run now."""
    return select(TrialLeaseRecord.holder).where(
        TrialLeaseRecord.token.is_not(None), TrialLeaseRecord.expires_at > now
    )


def _process_of(holder: str) -> str:
    """A Celery worker's holder is ``host:pid:delivery``; the process is ``host:pid``."""
    return holder.rsplit(":", 1)[0]


def _counted(rows: Iterable[Any]) -> dict[str, int]:
    """``{state: count}`` from rows of (state, count); Optuna's states are upper-case names."""
    return {str(state).lower(): int(count) for state, count in rows}
