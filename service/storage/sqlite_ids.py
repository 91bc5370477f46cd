"""On SQLite, a deleted study's (or data set's) ids are not handed out again.

SQLite gives a new row of a table without ``AUTOINCREMENT`` one more than the highest id in the
table: deleting the study that holds the highest study, trial and job ids gives those ids to the
next study. A client still holding one (a trial it will complete, a study's URL it keeps) would
then reach the new study's. Optuna creates its tables without ``AUTOINCREMENT``, and so did the
service's migrations; here each table whose ids a study's deletion frees is rebuilt once with it,
SQLite's documented way to change a table (create the new one, copy the rows, drop the old one,
rename the new, make the indexes again), in one transaction. Ids freed before the rebuild may
still come back once; none after. PostgreSQL's sequences never hand an id out twice.
"""

from __future__ import annotations

import logging
import re
import sqlite3

from sqlalchemy import Engine

logger = logging.getLogger(__name__)

#: The tables whose rows a study's (or a data set's) deletion removes, and their integer key.
ID_TABLES = {
    "studies": "study_id",
    "trials": "trial_id",
    "hpo_study_jobs": "job_id",
    "hpo_datasets": "dataset_id",
}
REBUILT_PREFIX = "_hpo_rebuilt_"


def keep_ids_unique(engine: Engine) -> None:
    """Rebuild each table of :data:`ID_TABLES` not yet made with ``AUTOINCREMENT``."""
    connection = engine.raw_connection()
    try:
        sqlite = connection.driver_connection
        assert isinstance(sqlite, sqlite3.Connection)
        for table, key in ID_TABLES.items():
            _rebuild_with_autoincrement(sqlite, table, key)
    finally:
        connection.close()


def _rebuild_with_autoincrement(sqlite: sqlite3.Connection, table: str, key: str) -> None:
    row = sqlite.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    if row is None or "AUTOINCREMENT" in row[0].upper():
        return
    rebuilt = autoincrement_ddl(row[0], table, key)
    if rebuilt is None:
        logger.warning("table %s kept as it is: its %s is not a plain integer key", table, key)
        return
    indexes = [
        sql
        for (sql,) in sqlite.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (table,),
        )
    ]
    script = ";\n".join(
        [
            "BEGIN IMMEDIATE",
            f"DROP TABLE IF EXISTS {REBUILT_PREFIX}{table}",
            rebuilt,
            f"INSERT INTO {REBUILT_PREFIX}{table} SELECT * FROM {table}",
            f"DROP TABLE {table}",
            f"ALTER TABLE {REBUILT_PREFIX}{table} RENAME TO {table}",
            *indexes,
            "COMMIT",
        ]
    )
    try:
        sqlite.executescript(script)  # foreign keys are off: the drop deletes nothing elsewhere
    except sqlite3.Error:
        sqlite.rollback()
        raise
    logger.info(
        "table %s rebuilt with AUTOINCREMENT: a deleted row's id is never handed out again", table
    )


def autoincrement_ddl(create_table: str, table: str, key: str) -> str | None:
    """``create_table`` (as SQLite keeps it) for a table named ``_hpo_rebuilt_<table>`` whose
    ``key`` is ``INTEGER PRIMARY KEY AUTOINCREMENT``; ``None`` where the statement is not the
    shape SQLAlchemy writes (``key INTEGER NOT NULL`` and a ``PRIMARY KEY (key)`` constraint)."""
    column = re.compile(rf"(\(\s*){key} INTEGER NOT NULL,")
    constraint = re.compile(rf",\s*(CONSTRAINT \w+ )?PRIMARY KEY \({key}\)")
    head = re.compile(rf"^CREATE TABLE \"?{table}\"? \(")
    if not (column.search(create_table) and constraint.search(create_table)):
        return None
    if not head.match(create_table):
        return None
    ddl = column.sub(rf"\g<1>{key} INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,", create_table, 1)
    ddl = constraint.sub("", ddl, 1)
    return head.sub(f"CREATE TABLE {REBUILT_PREFIX}{table} (", ddl, 1)
