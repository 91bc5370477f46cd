"""Checking a pooled PostgreSQL connection before use only when it has lain idle a while.

SQLAlchemy's ``pool_pre_ping`` sends a statement on every checkout, a round trip each (0.13 ms
on one host), and an ask takes four connections from the pool, a report two or three. A
connection used a moment ago is almost always still good; one that lay idle may have been
closed by the server (a restart, a failover, an idle timeout). So a connection is pinged when
it comes out of the pool only if it went back more than ``idle_s`` before, or was made before
these listeners (the engine's first connections, at start-up). One that fails the ping is made
again, and every connection the pool made before it is let go, as ``pool_pre_ping`` does. A
server restarted within ``idle_s`` of a connection's last use shows as a lost connection on its
first statement instead, as in-flight ones do anyway: ``OperationalError``, which the API
answers 503, and SQLAlchemy then lets the pool's connections go too.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidatePoolError

IDLE_BEFORE_PING_S = 1.0
RETURNED_AT = "hpo_returned_at"  # in the record's ``info``, which a new connection starts empty


def ping_when_idle(engine: Engine, idle_s: float = IDLE_BEFORE_PING_S) -> None:
    """Ping ``engine``'s pooled connections on checkout once they have been idle ``idle_s``."""
    dialect = engine.dialect

    def used(_dbapi_connection: Any, record: Any) -> None:  # made, or given back
        record.info[RETURNED_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        last_used = record.info.get(RETURNED_AT)  # None: made before these listeners
        if last_used is not None and time.monotonic() - last_used < idle_s:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # the pool makes it again, and lets the older ones go
            raise InvalidatePoolError(f"an idle connection was lost: {error}") from error

    event.listen(engine, "connect", used)
    event.listen(engine, "checkin", used)
    event.listen(engine, "checkout", checked_out)
