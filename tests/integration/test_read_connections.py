"""Reads on PostgreSQL leave no transaction to end, and the study lock still holds across them.

service.storage.read_connections gives reads (the study's record, Optuna's trials, a trial's
state) and the study lock an autocommit connection on PostgreSQL: no ``BEGIN`` before them and no
``ROLLBACK`` after. The study lock is a session-level advisory lock: it must hold from ``hold``'s
start to its end across processes, not only for the statement that took it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from service.storage.database import Database
from service.storage.idle_ping import ping_when_idle
from service.storage.study_lock import ADVISORY_LOCK_NAMESPACE, StudyLocks

STUDY_ID = 7


@pytest.fixture
def postgres_url(new_database_url: Callable[[str], str]) -> str:
    return new_database_url("postgresql")


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    yield database
    database.dispose()


def server_transaction_status(connection: Connection) -> psycopg.pq.TransactionStatus:
    """Whether the server holds a transaction open on this connection (psycopg's view)."""
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    return raw.info.transaction_status


def test_a_read_opens_no_transaction_on_the_server(database: Database) -> None:
    with database.reading() as connection:
        assert connection.execute(text("SELECT count(*) FROM trials")).scalar() == 0
        assert server_transaction_status(connection) == psycopg.pq.TransactionStatus.IDLE
    with database.engine.connect() as plain:  # a connection of the engine's own kind does
        plain.execute(text("SELECT 1"))
        assert server_transaction_status(plain) == psycopg.pq.TransactionStatus.INTRANS


def test_a_read_s_connection_goes_back_to_the_pool_out_of_autocommit(postgres_url: str) -> None:
    """The same pooled connection, taken next for a write, runs in a transaction again (a
    ``FOR UPDATE`` there must keep its row locked to the commit)."""
    database = Database(postgres_url, pool_size=1)
    try:
        with database.reading() as connection:
            read_on = connection.connection.dbapi_connection
            connection.execute(text("SELECT 1"))
        with database.engine.connect() as connection:
            assert connection.connection.dbapi_connection is read_on  # one connection pooled
            connection.execute(text("SELECT 1"))
            assert server_transaction_status(connection) == psycopg.pq.TransactionStatus.INTRANS
    finally:
        database.dispose()


def test_optuna_s_trial_reads_open_no_transaction(database: Database) -> None:
    seen: list[psycopg.pq.TransactionStatus] = []
    engine = database.optuna._backend.engine  # type: ignore[attr-defined]

    def after(connection: Connection, *_: object) -> None:
        seen.append(server_transaction_status(connection))

    study_id = database.optuna.create_new_study([], "reads")
    database.optuna.create_new_trial(study_id)
    event.listen(engine, "after_cursor_execute", after)
    try:
        trials = database.optuna.get_all_trials(study_id)
        database.optuna._backend.get_trial(trials[0]._trial_id)  # type: ignore[attr-defined]
    finally:
        event.remove(engine, "after_cursor_execute", after)
    assert len(trials) == 1
    assert len(seen) >= 2 and set(seen) == {psycopg.pq.TransactionStatus.IDLE}


def test_the_study_lock_holds_across_processes_until_its_block_ends(
    database: Database, postgres_url: str
) -> None:
    """Another API process (its own engine) cannot take the study's lock while a block holds
    it, and can as soon as the block ends."""
    other_process = create_engine(postgres_url)
    others = StudyLocks(other_process)
    taken_inside: list[bool] = []
    holding, checked = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with database_locks.hold(STUDY_ID):
            with database.reading() as connection:  # statements run while it is held
                connection.execute(text("SELECT 1"))
            holding.set()
            checked.wait(10)

    database_locks = StudyLocks(database.engine)
    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert holding.wait(10)
        with others.try_hold(STUDY_ID) as taken:
            taken_inside.append(taken)
    finally:
        checked.set()
        holder.join(10)
    with others.try_hold(STUDY_ID) as taken:
        taken_inside.append(taken)
    other_process.dispose()
    assert taken_inside == [False, True]


def test_a_study_lock_whose_connection_was_lost_neither_fails_the_block_nor_stays_held(
    database: Database, postgres_url: str
) -> None:
    """The lock's connection is cut while the block runs (the server ends its session, and the
    lock with it): the block's work stands, and another process takes the lock at once."""
    locks, others = StudyLocks(database.engine), StudyLocks(create_engine(postgres_url))
    with database.engine.connect() as killer, locks.hold(STUDY_ID):
        holder_pids = (
            killer.execute(
                text(
                    "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns"
                    " AND objid = :id AND granted"
                ),
                {"ns": ADVISORY_LOCK_NAMESPACE, "id": STUDY_ID},
            )
            .scalars()
            .all()
        )
        assert len(holder_pids) == 1
        killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder_pids[0]})
        killer.commit()
    with others.try_hold(STUDY_ID) as taken:
        assert taken


def backend_pid(connection: Connection) -> int:
    return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(postgres_url: str, pid: int) -> None:
    """End a server process as a restart or an idle timeout would, and wait until it is gone."""
    url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100):
            gone = admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
            if gone.fetchone() is None:
                return
            time.sleep(0.02)
    raise AssertionError(f"server process {pid} did not end")


@contextmanager
def lost_pooled_connection(postgres_url: str, idle_s: float) -> Iterator[tuple[Engine, int]]:
    """An engine pinging after ``idle_s`` whose one pooled connection was just lost; its pid."""
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, idle_s=idle_s)
    try:
        with engine.connect() as connection:
            lost = backend_pid(connection)
        terminate(postgres_url, lost)
        yield engine, lost
    finally:
        engine.dispose()


def test_a_connection_idle_past_the_limit_is_pinged_and_replaced_when_lost(
    postgres_url: str,
) -> None:
    with lost_pooled_connection(postgres_url, idle_s=0.2) as (engine, lost):
        time.sleep(0.25)
        with engine.connect() as connection:  # the ping found it lost: another one serves
            assert backend_pid(connection) != lost


def test_a_connection_used_a_moment_ago_is_not_pinged(postgres_url: str) -> None:
    with lost_pooled_connection(postgres_url, idle_s=60) as (engine, lost):
        with pytest.raises(OperationalError), engine.connect() as connection:
            backend_pid(connection)  # no round trip spent before: the loss shows here
        with engine.connect() as connection:  # and the pool has let it go
            assert backend_pid(connection) != lost


def test_connections_made_at_start_up_are_pinged_before_their_first_use(postgres_url: str) -> None:
    database = Database(postgres_url)  # start-up (migrations, Optuna checks) leaves pooled ones
    try:
        url = postgres_url.replace("postgresql+psycopg://", "postgresql://")
        name = postgres_url.rsplit("/", 1)[1]
        with psycopg.connect(url, autocommit=True) as admin:
            pids = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchall()
        assert pids, "start-up left no connection in the pools"
        for (pid,) in pids:
            terminate(postgres_url, pid)
        with database.reading() as connection:  # no 503: each lost one is found and made again
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
        assert database.optuna.get_all_studies() == []
    finally:
        database.dispose()
