"""A database that refuses some writes: a trigger on one of Optuna's tables, on SQLite or on
PostgreSQL, stands for a write failing part way through the service's work (an outage, a full
disk) where the test chooses."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text

from service.storage.database import Database

REFUSAL = "refused by the test"


@contextmanager
def inserts_refused(database: Database, table: str, condition: str) -> Iterator[None]:
    """While the block runs, the database refuses every row inserted into ``table`` for which
    ``condition`` (SQL over ``NEW``, e.g. ``NEW.study_id = 3``) holds."""
    name = f"refuse_{table}_inserts"
    postgres = database.engine.dialect.name == "postgresql"
    with database.engine.begin() as connection:
        if postgres:
            connection.execute(
                text(
                    "CREATE OR REPLACE FUNCTION refuse_insert() RETURNS trigger AS "
                    f"$$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW "
                    f"WHEN ({condition}) EXECUTE FUNCTION refuse_insert()"
                )
            )
        else:
            connection.execute(
                text(
                    f"CREATE TRIGGER {name} BEFORE INSERT ON {table} WHEN {condition} "
                    f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"
                )
            )
    try:
        yield
    finally:
        with database.engine.begin() as connection:
            connection.execute(text(f"DROP TRIGGER {name}" + (f" ON {table}" if postgres else "")))
