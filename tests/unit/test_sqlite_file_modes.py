"""The SQLite database the service makes is its owner's alone: it holds webhooks' secrets, live
leases and every tenant's data sets (under the usual umask it was readable by every user)."""

from __future__ import annotations

import stat
from pathlib import Path

from service.storage.database import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_its_folder_and_its_wal_are_the_owner_s_alone(tmp_path: Path) -> None:
    path = tmp_path / "made" / "hpo.db"
    database = Database(f"sqlite:///{path}")
    try:
        with database.engine.begin() as connection:  # a write: the WAL's files appear
            connection.exec_driver_sql("CREATE TABLE written (x INTEGER)")
        assert mode(path.parent) & 0o077 == 0
        for made in (path, path.with_name("hpo.db-wal"), path.with_name("hpo.db-shm")):
            assert made.exists() and mode(made) & 0o077 == 0, (made, oct(mode(made)))
    finally:
        database.dispose()


def test_a_database_already_there_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "hpo.db"
    path.touch(mode=0o640)
    path.chmod(0o640)  # an operator's choice (a group that backs it up, say)
    Database(f"sqlite:///{path}").dispose()
    assert mode(path) == 0o640
