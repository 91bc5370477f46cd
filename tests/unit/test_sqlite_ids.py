"""The CREATE TABLE rewrite that gives a table's key AUTOINCREMENT."""

from __future__ import annotations

import sqlite3

from service.storage.sqlite_ids import autoincrement_ddl

# As SQLAlchemy writes them (a space before each line's end).
OPTUNA_TRIALS = (
    "CREATE TABLE trials (\n\ttrial_id INTEGER NOT NULL, \n\tnumber INTEGER, \n"
    "\tstudy_id INTEGER, \n\tPRIMARY KEY (trial_id), \n"
    "\tFOREIGN KEY(study_id) REFERENCES studies (study_id)\n)"
)
SERVICE_JOBS = (
    "CREATE TABLE hpo_study_jobs (\n\tjob_id INTEGER NOT NULL, \n\tstudy_id INTEGER, \n"
    "\tCONSTRAINT pk_hpo_study_jobs PRIMARY KEY (job_id)\n)"
)


def test_the_key_becomes_an_autoincrement_primary_key_of_the_new_table() -> None:
    for ddl, table, key in (
        (OPTUNA_TRIALS, "trials", "trial_id"),
        (SERVICE_JOBS, "hpo_study_jobs", "job_id"),
    ):
        rebuilt = autoincrement_ddl(ddl, table, key)
        assert rebuilt is not None
        assert rebuilt.startswith(f"CREATE TABLE _hpo_rebuilt_{table} (")
        assert f"{key} INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT," in rebuilt
        assert f"PRIMARY KEY ({key})" not in rebuilt
        connection = sqlite3.connect(":memory:")
        connection.execute(rebuilt)
        connection.execute(f"INSERT INTO _hpo_rebuilt_{table} ({key}) VALUES (7)")
        connection.execute(f"DELETE FROM _hpo_rebuilt_{table}")
        connection.execute(f"INSERT INTO _hpo_rebuilt_{table} ({key}) VALUES (NULL)")
        assert connection.execute(f"SELECT {key} FROM _hpo_rebuilt_{table}").fetchone() == (8,)


def test_a_table_of_another_shape_is_left_alone() -> None:
    composite = OPTUNA_TRIALS.replace("PRIMARY KEY (trial_id)", "PRIMARY KEY (trial_id, number)")
    text_key = OPTUNA_TRIALS.replace("trial_id INTEGER NOT NULL", "trial_id VARCHAR(8) NOT NULL")
    for ddl in (composite, text_key, OPTUNA_TRIALS.replace("trials", "other", 1)):
        assert autoincrement_ddl(ddl, "trials", "trial_id") is None
