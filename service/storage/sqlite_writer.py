"""One writing transaction at a time per SQLite database within a process, queued on a lock.

SQLite lets one connection write at a time. A connection that finds the database locked waits
in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20, 25 ms and so on between tries: a
writer behind another waits to the end of its current sleep, not to the moment the database is
free. With a few API threads writing at once (reports, asks and completions of several workers)
that rounding up is most of a report's p99 (clusters at 8, 18 and 33 ms, the sums of the sleeps).
Here every connection of the process to the same database file takes a lock before its first
writing statement and gives it back when its transaction ends (commit, rollback or close), so a
waiting writer starts as soon as the one before it commits. SQLite's own busy handler stays for
other processes on the same file. A writer waits on the lock at most as long as SQLite's busy
timeout would let it wait, then fails as SQLite would: ``database is locked``. Every way the
sqlite3 module ends a transaction (commit, rollback, ``with connection:``, ``executescript``,
close, the connection dropped) gives the lock back.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, ClassVar

# Statements that only read (a PRAGMA that sets something is not used here). Anything else,
# e.g. a WITH that might write, takes the lock: over-taking it only makes a read queue.
_READS = ("SELECT", "PRAGMA", "EXPLAIN", "VALUES")
_guard = threading.Lock()
_connection_classes: dict[str, type[WriterQueuedConnection]] = {}


class WriterQueuedConnection(sqlite3.Connection):
    """A sqlite3 connection whose writing transactions take the database's writer lock."""

    writer: ClassVar[threading.Lock]
    wait_s: ClassVar[float]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holds_writer = False

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _WriterQueuedCursor)

    # The connection's own shortcuts make their cursor in C, past ``cursor()``: route them here.
    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.cursor().executemany(sql, parameters)

    def executescript(self, script: str, /) -> Any:
        self.take_writer(script)
        try:
            return super().executescript(script)
        finally:
            self.give_writer_back()

    def take_writer(self, statement: str) -> None:
        """Before ``statement``: take the writer lock if it writes and this connection has not."""
        if self.holds_writer or statement.lstrip()[:7].upper().startswith(_READS):
            return
        if not self.writer.acquire(timeout=self.wait_s):
            raise sqlite3.OperationalError("database is locked")
        self.holds_writer = True

    def give_writer_back(self) -> None:
        """After a statement, a commit or a rollback: give the lock back if no transaction is
        open (a closed connection has none)."""
        if not self.holds_writer:
            return
        try:
            open_transaction = self.in_transaction
        except sqlite3.ProgrammingError:  # closed
            open_transaction = False
        if not open_transaction:
            self._release()

    def _release(self) -> None:
        if getattr(self, "holds_writer", False):  # not set where the connection never opened
            self.holds_writer = False
            self.writer.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.give_writer_back()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.give_writer_back()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()

    def __exit__(self, *exc: Any) -> Any:  # ``with connection:`` commits or rolls back in C
        try:
            return super().__exit__(*exc)
        finally:
            self.give_writer_back()

    def __del__(self) -> None:  # dropped without close(): SQLite ends its transaction too
        self._release()


class _WriterQueuedCursor(sqlite3.Cursor):
    connection: WriterQueuedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> _WriterQueuedCursor:
        self.connection.take_writer(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.give_writer_back()

    def executemany(self, sql: str, parameters: Any, /) -> _WriterQueuedCursor:
        self.connection.take_writer(sql)
        try:
            return super().executemany(sql, parameters)
        finally:
            self.connection.give_writer_back()


def connection_class(database_path: str, wait_s: float) -> type[WriterQueuedConnection]:
    """The connection class (``sqlite3.connect``'s ``factory``) for one database file: every
    engine of this process on that file shares its writer lock."""
    with _guard:
        found = _connection_classes.get(database_path)
        if found is None:
            attributes = {"writer": threading.Lock(), "wait_s": wait_s}
            found = type("WriterQueuedConnection", (WriterQueuedConnection,), attributes)
            _connection_classes[database_path] = found
        return found
