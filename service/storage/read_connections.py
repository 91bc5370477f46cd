"""Connections for statements that only read (or take and give back session-level advisory locks).

On PostgreSQL such a connection runs in autocommit: psycopg then sends no ``BEGIN`` before the
first statement, and the pool no ``ROLLBACK`` when it takes the connection back, two round trips
of the three or four a short read costs. What the reads see does not change: under PostgreSQL's
default READ COMMITTED each statement of a transaction reads the rows committed when it starts,
as each autocommit statement does (a server set to REPEATABLE READ by default would have given a
read of several statements one snapshot; the service does not ask for that level). SQLite's driver
opens no transaction for a read: there the engine's own connection is used as it is. The pool puts
a connection back out of autocommit when it is returned.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine


def connect_for_reads(engine: Engine) -> Connection:
    """A connection of ``engine``'s pool for reads: autocommit on PostgreSQL (use it in ``with``)."""
    connection = engine.connect()
    if engine.dialect.name != "postgresql":
        return connection
    try:
        return connection.execution_options(isolation_level="AUTOCOMMIT")
    except BaseException:
        connection.close()
        raise
