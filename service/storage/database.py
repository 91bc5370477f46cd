"""The study database: Optuna's RDB storage and the service's tables on one URL.

Every use of the service's tables goes through :meth:`Database.session`, which commits,
rolls back on error, and turns a lost connection into :class:`~service.errors.Unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import Unavailable
from service.storage.tables import ServiceTable

SQLITE_BUSY_TIMEOUT_S = 30
SCHEMA_LOCK_KEY = 0x48504F5343484D41  # "HPOSCHMA": a one-argument advisory key of its own


class Database:
    """Engines for one database URL: Optuna's storage, and the service's own tables."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.engine = create_engine(url, **self._engine_kwargs(pool_size))
        if self.dialect == "sqlite":
            _make_parent_folder(self.engine.url.database)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self._schema_lock():
            ServiceTable.metadata.create_all(self.engine)
            rdb = optuna.storages.RDBStorage(url, engine_kwargs=self._engine_kwargs(pool_size))
        # Optuna's own cache over the RDB storage: finished trials are read from the database once.
        self.optuna: optuna.storages.BaseStorage = optuna.storages.get_storage(rdb)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _schema_lock(self) -> Iterator[None]:
        """One process at a time creates the tables: API processes starting together on a new
        PostgreSQL database would otherwise race on CREATE TYPE / CREATE TABLE and one would die."""
        if self.dialect != "postgresql":
            yield
            return
        with self.engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY}
                )
                connection.commit()

    def _engine_kwargs(self, pool_size: int) -> dict[str, Any]:
        if self.dialect == "sqlite":
            return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}}
        return {"pool_pre_ping": True, "pool_size": pool_size, "max_overflow": pool_size}

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as error:
            session.rollback()
            if getattr(error, "connection_invalidated", False) or isinstance(
                error, OperationalError
            ):
                raise Unavailable("the study database cannot be reached") from error
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, and in tests)."""
        self.engine.dispose()


def _make_parent_folder(path: str | None) -> None:
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; it persists in the file for Optuna's engine too.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
