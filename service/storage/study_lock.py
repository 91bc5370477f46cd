"""One writer at a time per study, for the steps that must count and then create trials.

Within a process a lock per study; across API processes on PostgreSQL, a session-level
advisory lock keyed on the study id as well. SQLite serves one API process (the embedded mode),
so the process lock is enough there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

from service.storage.read_connections import connect_for_reads

logger = logging.getLogger(__name__)
ADVISORY_LOCK_NAMESPACE = (
    0x4850  # "HP": keeps the service's keys apart from other users of the database
)


class StudyLocks:
    """Mutual exclusion per study id."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._cross_process = engine.dialect.name == "postgresql"

    @contextmanager
    def hold(self, study_id: int) -> Iterator[None]:
        """Hold the study's lock for the duration of the block."""
        with self._process_lock(study_id):
            if not self._cross_process:
                yield
                return
            with connect_for_reads(self._engine) as connection:  # no BEGIN or COMMIT to send
                key = {"ns": ADVISORY_LOCK_NAMESPACE, "id": study_id}
                connection.execute(text("SELECT pg_advisory_lock(:ns, :id)"), key)
                try:
                    yield
                finally:
                    _unlock(connection, key)

    @contextmanager
    def try_hold(self, key: int) -> Iterator[bool]:
        """Take the lock ``key`` if free; yields whether it was taken (never waits)."""
        lock = self._process_lock(key)
        if not lock.acquire(blocking=False):
            yield False
            return
        try:
            if not self._cross_process:
                yield True
                return
            with connect_for_reads(self._engine) as connection:
                yield from self._try_advisory(connection, key)
        finally:
            lock.release()

    def _try_advisory(self, connection: Connection, key: int) -> Iterator[bool]:
        params = {"ns": ADVISORY_LOCK_NAMESPACE, "id": key}
        taken = connection.execute(text("SELECT pg_try_advisory_lock(:ns, :id)"), params).scalar()
        try:
            yield bool(taken)
        finally:
            if taken:
                _unlock(connection, params)

    def _process_lock(self, study_id: int) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(study_id, threading.Lock())


def _unlock(connection: Connection, key: dict[str, int]) -> None:
    """Give the advisory lock back. Where that fails (the connection lost meanwhile, say), the
    connection is dropped, not pooled: the server ends a session's locks with it, and a pooled
    connection still holding the lock would stop every other process at that study. Not raised:
    the block's own outcome stands (its error, or its work, already committed)."""
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:ns, :id)"), key)
    except Exception:
        logger.warning("advisory lock %s: not given back; its connection is dropped", key["id"])
        connection.invalidate()
