"""The study database: Optuna's RDB storage and the service's tables on one URL.

Every use of the service's tables goes through :meth:`Database.session`, which commits,
rolls back on error, and turns a lost connection into :class:`~service.errors.Unavailable`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from service.errors import NotFound, Unavailable
from service.storage.idle_ping import ping_when_idle
from service.storage.migrations import upgrade_to_head
from service.storage.read_connections import connect_for_reads
from service.storage.sqlite_ids import keep_ids_unique
from service.storage.sqlite_writer import connection_class
from service.storage.tables import ServiceTable
from service.storage.trial_reader import CoreReadRDBStorage

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30
SCHEMA_LOCK_KEY = 0x48504F5343484D41  # "HPOSCHMA": a one-argument advisory key of its own
UNREACHABLE = "the study database cannot be reached"
RETRY_LATER = f"{UNREACHABLE}; retry later"  # a 503's message (the API's, the dashboard's)
# What a statement raises while the database is out of reach (SQLAlchemy's; Optuna's storage
# wraps them), answered 503 by the API and the dashboard alike.
DATABASE_OUTAGES: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    StorageInternalError,
)
DELETED_MEANWHILE = "it was deleted by another request meanwhile"  # no table has a version column


class Database:
    """Engines for one database URL: Optuna's storage, and the service's own tables."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.dialect = url.split(":", 1)[0].split("+", 1)[0]
        self.engine = create_engine(url, **self._engine_kwargs(pool_size))
        if self.dialect == "sqlite":
            _make_parent_folder(self.engine.url.database)
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with schema_lock(self.engine):
            #: The service tables' revision before and after this start's upgrade.
            self.schema_revisions = _upgrade_service_tables(self.engine)
            rdb = CoreReadRDBStorage(url, engine_kwargs=self._engine_kwargs(pool_size))
            if self.dialect == "sqlite":
                keep_ids_unique(self.engine)
        if self.dialect != "sqlite":
            for engine in (self.engine, rdb.engine):
                ping_when_idle(engine)
        # Optuna's own cache over the RDB storage: finished trials are read from the database once
        # (its reads by Core queries: service.storage.trial_reader).
        self.optuna: optuna.storages.BaseStorage = optuna.storages.get_storage(rdb)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def _engine_kwargs(self, pool_size: int) -> dict[str, Any]:
        if self.dialect == "sqlite":
            connect_args: dict[str, Any] = {
                "timeout": SQLITE_BUSY_TIMEOUT_S,
                "check_same_thread": False,
            }
            path = make_url(self.url).database
            # Writers of this process queue on a lock per file: service.storage.sqlite_writer.
            if path and path != ":memory:":
                connect_args["factory"] = connection_class(
                    str(Path(path).resolve()), SQLITE_BUSY_TIMEOUT_S
                )
            return {"connect_args": connect_args, "hide_parameters": True}
        # hide_parameters: a statement's error is logged without its values (a webhook's secret
        # in a spec's JSON, a lease, an Idempotency-Key).
        return {"pool_size": pool_size, "max_overflow": pool_size, "hide_parameters": True}

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on any error: ``Unavailable`` when the
        database cannot be reached, ``NotFound`` when a row it read was deleted by another
        request before its write (an ORM write that found no row; SQLite takes no lock on a
        read)."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except (OperationalError, DBAPIError) as error:
            session.rollback()
            if _unreachable(error):
                raise Unavailable(UNREACHABLE) from error
            raise
        except StaleDataError as error:  # the row went after this session read it
            session.rollback()
            raise NotFound(DELETED_MEANWHILE) from error
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads (no ORM session), its errors told as :meth:`session` tells them."""
        try:
            with connect_for_reads(self.engine) as connection:
                yield connection
        except (OperationalError, DBAPIError) as error:
            if _unreachable(error):
                raise Unavailable(UNREACHABLE) from error
            raise

    def dispose(self) -> None:
        """Close every pooled connection (at shutdown, and in tests)."""
        self.engine.dispose()


@contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """One process at a time creates or upgrades the tables (``Database``, ``hpo db upgrade``):
    API processes or init containers starting together on a new PostgreSQL database would
    otherwise race on CREATE TYPE / CREATE TABLE and one would die. SQLite has no advisory lock:
    a lock file beside the database stands in."""
    if engine.dialect.name == "sqlite":
        _make_parent_folder(engine.url.database)  # a new database's folder: the lock goes there
        with _file_lock(engine.url.database):
            yield
        return
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
            connection.commit()


def _unreachable(error: DBAPIError) -> bool:
    """Whether ``error`` says the database could not be reached (``Unavailable``: 503, retry)."""
    return bool(getattr(error, "connection_invalidated", False)) or isinstance(
        error, OperationalError
    )


def _upgrade_service_tables(engine: Engine) -> tuple[str | None, str]:
    """Alembic's upgrade to head, in one transaction; then any table of ``tables.py`` that no
    revision creates yet is created (with a warning: it needs a revision in
    ``service/storage/migrations/versions``; tests/integration/test_migrations.py fails until then).
    """
    with engine.begin() as connection:
        revisions = upgrade_to_head(connection)
        missing = set(ServiceTable.metadata.tables) - set(inspect(connection).get_table_names())
        if missing:
            logger.warning("tables without a migration, created as they are: %s", sorted(missing))
            ServiceTable.metadata.create_all(connection)
    return revisions


@contextmanager
def _file_lock(path: str | None) -> Iterator[None]:
    """An exclusive lock on ``<database>.schema-lock`` (none for an in-memory database)."""
    if not path or path == ":memory:":
        yield
        return
    with open(f"{path}.schema-lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def make_private_folder(folder: Path) -> None:
    """``folder`` and its parents; the folder its owner's alone where this makes it (one
    already there keeps its mode)."""
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)


def _make_parent_folder(path: str | None) -> None:
    """The SQLite file's folder, and the file, for its owner alone where this makes them (the
    file holds webhooks' secrets, live leases, every tenant's data sets: readable by every user
    of the machine under the usual umask; SQLite gives its -wal and -shm files the file's mode).
    A file or folder already there keeps its mode."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    make_private_folder(Path(path).parent)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets readers go on while one writer commits; it persists in the file for Optuna's engine too.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
