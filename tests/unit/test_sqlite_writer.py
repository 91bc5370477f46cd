"""SQLite writers of one process queue on the database's writer lock: taken at a transaction's
first write, given back when it ends; reads never take it; a writer that waits too long fails as
SQLite would."""

from __future__ import annotations

import gc
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from service.storage.database import Database
from service.storage.sqlite_writer import WriterQueuedConnection, connection_class


def connect(path: Path, wait_s: float = 5.0) -> WriterQueuedConnection:
    factory = connection_class(str(path), wait_s)
    connection = sqlite3.connect(path, factory=factory, check_same_thread=False, timeout=5)
    assert isinstance(connection, WriterQueuedConnection)
    return connection


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "writers.db"
    setup = connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.cursor().execute("CREATE TABLE t (x INTEGER)")
    assert not setup.holds_writer  # DDL outside a transaction holds nothing afterwards
    setup.close()
    return path


def test_a_write_holds_the_lock_until_its_transaction_commits(database: Path) -> None:
    connection = connect(database)
    cursor = connection.cursor()
    cursor.execute("SELECT count(*) FROM t")
    assert not connection.writer.locked()  # a read takes nothing
    cursor.execute("INSERT INTO t VALUES (1)")
    assert connection.holds_writer and connection.writer.locked()
    cursor.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
    connection.commit()
    assert not connection.holds_writer and not connection.writer.locked()


@pytest.mark.parametrize("end", ["rollback", "close"])
def test_a_rollback_or_a_close_gives_the_lock_back(database: Path, end: str) -> None:
    connection = connect(database)
    connection.cursor().execute("UPDATE t SET x = 1")
    assert connection.writer.locked()
    getattr(connection, end)()
    assert not connection.writer.locked()


def test_a_second_writer_waits_for_the_first_to_commit_then_writes(database: Path) -> None:
    first, second = connect(database), connect(database)
    first.cursor().execute("INSERT INTO t VALUES (1)")
    written = threading.Event()

    def write_second() -> None:
        second.cursor().execute("INSERT INTO t VALUES (2)")
        second.commit()
        written.set()

    thread = threading.Thread(target=write_second)
    thread.start()
    assert not written.wait(0.3)  # queued behind the first writer's open transaction
    first.commit()
    assert written.wait(5)
    thread.join()
    rows = first.cursor().execute("SELECT x FROM t ORDER BY x").fetchall()
    assert rows == [(1,), (2,)]


def test_connections_to_other_files_do_not_share_the_lock(database: Path, tmp_path: Path) -> None:
    other = connect(tmp_path / "other.db")
    assert connect(database).writer is not other.writer
    assert connect(database).writer is connect(database).writer


def test_a_writer_that_waits_past_its_limit_fails_as_sqlite_would(tmp_path: Path) -> None:
    path = tmp_path / "slow.db"
    first, second = connect(path, wait_s=0.2), connect(path, wait_s=0.2)
    first.cursor().execute("CREATE TABLE t (x INTEGER)")
    first.cursor().execute("INSERT INTO t VALUES (1)")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        second.cursor().execute("INSERT INTO t VALUES (2)")
    assert time.monotonic() - started >= 0.2
    assert not second.holds_writer
    first.commit()
    second.cursor().execute("INSERT INTO t VALUES (2)")  # free again: it writes
    second.commit()


def test_the_service_s_and_optuna_s_engines_share_the_database_s_lock(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'service.db'}")
    ours = database.engine.raw_connection()
    optunas = database.optuna._backend.engine.raw_connection()  # type: ignore[attr-defined]
    try:
        assert isinstance(ours.driver_connection, WriterQueuedConnection)
        assert isinstance(optunas.driver_connection, WriterQueuedConnection)
        assert ours.driver_connection.writer is optunas.driver_connection.writer
    finally:
        ours.close()
        optunas.close()
        database.dispose()


def test_every_way_the_sqlite3_module_ends_a_transaction_gives_the_lock_back(
    database: Path,
) -> None:
    connection = connect(database)
    connection.execute("INSERT INTO t VALUES (1)")  # the connection's own shortcut takes it
    assert connection.holds_writer
    with connection:  # commits in C, past commit()
        connection.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])
    assert not connection.writer.locked()
    connection.execute("INSERT INTO t VALUES (4)")
    connection.executescript("INSERT INTO t VALUES (5);")  # commits the open one first
    assert not connection.writer.locked()
    assert connection.execute("SELECT count(*) FROM t").fetchone() == (5,)


def test_a_closed_or_dropped_connection_never_keeps_the_lock(database: Path) -> None:
    closed = connect(database)
    cursor = closed.cursor()
    closed.close()
    with pytest.raises(sqlite3.ProgrammingError):
        cursor.execute("INSERT INTO t VALUES (1)")
    assert not closed.writer.locked()
    dropped = connect(database)
    writer = dropped.writer
    dropped.execute("INSERT INTO t VALUES (1)")
    assert writer.locked()
    del dropped
    gc.collect()
    assert not writer.locked()
