"""Migrations of the service's own tables: an empty database, databases made by earlier releases
(by ``create_all``, with no version row) and ``hpo db upgrade``, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from optuna.trial import TrialState
from sqlalchemy import Engine

from cli.processes import free_port
from service.datasets import DatasetStore
from service.dispatch import NoDispatcher
from service.errors import Conflict
from service.spec.study_spec import StudySpec
from service.spec.webhook import STORED_SPEC_CONTEXT
from service.storage.database import Database
from service.storage.migrations import (
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    is_service_table,
    upgrade_to_head,
)
from service.storage.tables import ServiceTable, StudyRecord
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.datasets import blobs, csv_bytes
from tests.support.tcp_forward import tcp_forward

pytestmark = pytest.mark.integration

NAMING = {
    "pk": "pk_%(table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ix": "ix_%(table_name)s_%(column_0_name)s",
}
CREATED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CSV = csv_bytes(*blobs())


def first_release_metadata() -> sa.MetaData:
    """``tables.py`` as of the first release (451e91f): studies only."""
    metadata = sa.MetaData(naming_convention={key: NAMING[key] for key in ("pk", "uq")})
    sa.Table(
        "hpo_studies",
        metadata,
        sa.Column("study_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("study_name", sa.String(128), unique=True, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    return metadata


def previous_release_metadata() -> sa.MetaData:
    """``tables.py`` as of the leases release (5ecb46d): before ``hpo_studies.tenant``,
    ``hpo_trial_leases.sent``, tokens and budgets."""
    metadata = first_release_metadata()
    metadata.naming_convention = NAMING
    sa.Table(
        "hpo_trial_leases",
        metadata,
        sa.Column("trial_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("study_id", sa.Integer, index=True, nullable=False),
        sa.Column("token", sa.String(64), nullable=True),
        sa.Column("holder", sa.String(200), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), index=True, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
    )
    return metadata


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def service_tables(engine: Engine) -> dict[str, set[str]]:
    """The service's tables in the database, each with its column names."""
    inspector = sa.inspect(engine)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if is_service_table(table)
    }


def todays_tables() -> dict[str, set[str]]:
    return {name: set(table.columns.keys()) for name, table in ServiceTable.metadata.tables.items()}


def schema_differences(engine: Engine) -> list[Any]:
    """What Alembic's autogenerate would change to reach ``tables.py``: tables, columns, types,
    nullability, indexes and unique constraints."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "include_name": lambda name, kind, _: kind != "table" or is_service_table(name),
            },
        )
        return list(compare_metadata(context, ServiceTable.metadata))


def stored_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return current_revision(connection)


def test_an_empty_database_is_upgraded_to_exactly_todays_tables(engine: Engine) -> None:
    with engine.begin() as connection:
        before, after = upgrade_to_head(connection)
    assert (before, after) == (None, head_revision())
    assert service_tables(engine) == todays_tables()
    assert schema_differences(engine) == []
    assert stored_revision(engine) == head_revision()
    assert VERSION_TABLE in sa.inspect(engine).get_table_names()
    assert "alembic_version" not in sa.inspect(engine).get_table_names()  # Optuna's stays Optuna's


def insert_old_rows(engine: Engine, metadata: sa.MetaData) -> None:
    studies = [
        {"study_id": 1, "study_name": "old-a", "spec_json": '{"a": 1}', "state": "running"},
        {"study_id": 2, "study_name": "old-b", "spec_json": '{"b": 2}', "state": "complete"},
    ]
    with engine.begin() as connection:
        connection.execute(
            metadata.tables["hpo_studies"].insert(),
            [{**study, "created_at": CREATED, "finished_at": None} for study in studies],
        )
        if "hpo_trial_leases" in metadata.tables:
            connection.execute(
                metadata.tables["hpo_trial_leases"].insert(),
                {
                    "trial_id": 7,
                    "study_id": 1,
                    "token": "t",
                    "holder": "w1",
                    "expires_at": CREATED,
                    "attempt": 2,
                },
            )


@pytest.mark.parametrize(
    "old_metadata", [first_release_metadata, previous_release_metadata], ids=["first", "previous"]
)
def test_a_database_of_an_earlier_release_is_upgraded_with_its_rows_kept(
    engine: Engine, database_url: str, old_metadata: Callable[[], sa.MetaData]
) -> None:
    metadata = old_metadata()
    metadata.create_all(engine)
    insert_old_rows(engine, metadata)
    assert stored_revision(engine) is None  # create_all left no version row

    database = Database(database_url)  # the service starting on it upgrades it
    database.dispose()

    assert service_tables(engine) == todays_tables()
    assert schema_differences(engine) == []
    assert stored_revision(engine) == head_revision()
    with engine.connect() as connection:
        studies = connection.execute(
            sa.text(
                "SELECT study_id, study_name, spec_json, state, tenant, n_trials, optuna_name"
                " FROM hpo_studies ORDER BY study_id"
            )
        ).all()
        leases = connection.execute(
            sa.text("SELECT trial_id, study_id, holder, attempt, sent FROM hpo_trial_leases")
        ).all()
    assert [tuple(row) for row in studies] == [
        (1, "old-a", '{"a": 1}', "running", "default", None, "old-a"),
        (2, "old-b", '{"b": 2}', "complete", "default", None, "old-b"),
    ]
    expected_leases = [(7, 1, "w1", 2, True)] if "hpo_trial_leases" in metadata.tables else []
    assert [tuple(row) for row in leases] == expected_leases


def test_todays_tables_without_a_version_row_are_stamped_not_recreated(
    engine: Engine, database_url: str
) -> None:
    ServiceTable.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(StudyRecord),
            {
                "study_id": 3,
                "study_name": "today",
                "optuna_name": "t1/today",
                "tenant": "t1",
                "spec_json": "{}",
                "state": "running",
                "created_at": CREATED,
            },
        )
    database = Database(database_url)
    revisions = database.schema_revisions
    database.dispose()
    assert revisions == (head_revision(), head_revision())
    assert stored_revision(engine) == head_revision()
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT study_name, tenant FROM hpo_studies")).all() == [
            ("today", "t1")
        ]


def hpo_db(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "db", *args],
        env={**os.environ, "HPO_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_hpo_db_upgrade_upgrades_both_schemas_and_is_idempotent(
    engine: Engine, database_url: str
) -> None:
    behind = hpo_db(database_url, "current")
    assert behind.returncode == 1, behind.stderr
    assert "service tables: none" in behind.stdout

    first = hpo_db(database_url, "upgrade")
    assert first.returncode == 0, first.stderr
    assert f"service tables: none -> {head_revision()}" in first.stdout
    second = hpo_db(database_url, "upgrade")
    assert second.returncode == 0, second.stderr
    assert f"service tables: {head_revision()} -> {head_revision()}" in second.stdout

    assert service_tables(engine) == todays_tables()
    assert {"studies", "trials", "alembic_version"} <= set(sa.inspect(engine).get_table_names())
    current = hpo_db(database_url, "current")
    assert current.returncode == 0, current.stderr
    assert f"service tables: {head_revision()}" in current.stdout


def test_hpo_db_upgrade_waits_for_a_database_that_takes_connections_late(
    new_database_url: Callable[[str], str],
) -> None:
    """A server still starting (compose's first start, a pod's): ``--wait`` outlasts it."""
    url = sa.make_url(new_database_url("postgresql"))
    port = free_port()
    late = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    upgrading = subprocess.Popen(
        [sys.executable, "-m", "cli", "db", "upgrade", "--wait", "60"],
        env={**os.environ, "HPO_DATABASE_URL": late},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert upgrading.stdout is not None
    first = upgrading.stdout.readline()  # printed once its first connection is refused
    assert first.startswith("waiting up to 60 s for the database"), first
    with tcp_forward(port, (url.host or "127.0.0.1", url.port or 5432)):
        out, err = upgrading.communicate(timeout=120)
    assert upgrading.returncode == 0, err
    assert f"service tables: none -> {head_revision()}" in out


def test_hpo_db_upgrade_makes_a_new_sqlite_database_in_a_folder_not_made_yet(
    tmp_path: Path,
) -> None:
    path = tmp_path / "not" / "made" / "hpo.db"
    done = hpo_db(f"sqlite:///{path}", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"service tables: none -> {head_revision()}" in done.stdout and path.exists()


def test_hpo_db_upgrade_without_wait_names_a_database_out_of_reach_at_once() -> None:
    unreachable = f"postgresql+psycopg://hpo:pw@127.0.0.1:{free_port()}/hpo"
    refused = hpo_db(unreachable, "upgrade")
    assert refused.returncode == 1
    assert "the database (HPO_DATABASE_URL) cannot be opened" in refused.stderr
    assert "waiting" not in refused.stdout and "Traceback" not in refused.stderr


def test_a_database_a_newer_release_upgraded_is_named_so_not_a_traceback(
    engine: Engine, database_url: str
) -> None:
    assert hpo_db(database_url, "upgrade").returncode == 0
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE hpo_alembic_version SET version_num = '0099_future'"))
    for command_words in (("upgrade",), ("current",)):
        done = hpo_db(database_url, *command_words)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    upgraded = hpo_db(database_url, "upgrade")
    assert "at revision '0099_future', which this release does not know" in upgraded.stderr
    current = hpo_db(database_url, "current")
    assert "ahead of this release: a newer release upgraded them" in current.stdout


LEGACY_NAME = "legacy-sweep"


def legacy_spec() -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": LEGACY_NAME,
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "pruner": {"name": "none"},
        }
    )


def make_previous_schema_with_a_study(engine: Engine, database_url: str) -> int:
    """A database as the release before per-tenant names left it (service tables at
    0008_token_expiry, Optuna's schema), with tenant ``a``'s study under its plain name; its id."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0008_token_expiry")
    rdb = optuna.storages.RDBStorage(database_url)
    study_id = optuna.create_study(study_name=LEGACY_NAME, storage=rdb)._study_id
    rdb.engine.dispose()
    record = {
        "study_id": study_id,
        "study_name": LEGACY_NAME,
        "tenant": "a",
        "n_trials": 100,
        "spec_json": legacy_spec().model_dump_json(context=STORED_SPEC_CONTEXT),
        "state": "running",
        "created_at": CREATED,
    }
    with engine.begin() as connection:
        connection.execute(sa.table("hpo_studies", *map(sa.column, record)).insert(), record)
    return study_id


def optuna_names(engine: Engine) -> dict[int, str]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT study_id, study_name FROM studies")).all()
    return {int(study_id): str(name) for study_id, name in rows}


def test_a_study_of_the_release_before_per_tenant_names_still_loads_and_runs(
    engine: Engine, database_url: str
) -> None:
    legacy_id = make_previous_schema_with_a_study(engine, database_url)
    assert stored_revision(engine) == "0008_token_expiry"

    database = Database(database_url)  # the service starting on it upgrades it
    try:
        tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
        assert database.schema_revisions == ("0008_token_expiry", head_revision())
        assert tuner.study(legacy_id, "a").name == LEGACY_NAME
        trial = tuner.ask(legacy_id, "a")
        tuner.report(trial.trial_id, 1, 0.4, trial.lease, "a")
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.3, None, trial.lease, "a")
        assert tuner.best(legacy_id, "a").trial_id == trial.trial_id
        assert tuner.optuna_study(legacy_id, "a").best_value == 0.3

        with pytest.raises(Conflict, match="already exists"):  # the tenant's own name still
            tuner.create_study(legacy_spec(), "a")
        theirs = tuner.create_study(legacy_spec(), "b").study_id
        ours = tuner.create_study(legacy_spec(), "default").study_id  # plain name held
        assert tuner.study(ours, "default").name == tuner.study(theirs, "b").name == LEGACY_NAME
    finally:
        database.dispose()
    assert optuna_names(engine) == {
        legacy_id: LEGACY_NAME,  # as it was
        theirs: f"b/{LEGACY_NAME}",
        ours: f"default/{LEGACY_NAME}",  # the one the default tenant's study takes instead
    }
    assert schema_differences(engine) == []


def old_dataset_row(name: str, tenant: str) -> dict[str, Any]:
    meta = {"n_rows": 3, "n_features": 1, "classes": ["x", "y"], "class_counts": [2, 1]}
    return {
        "name": name,
        "tenant": tenant,
        "file_format": "csv",
        "label_column": "y",
        "sha256": "0" * 64,
        "size_bytes": 12,
        "meta_json": json.dumps(meta),
        "content": b"a,y\n1,x\n2,x\n3,y\n",
        "created_at": CREATED,
    }


def test_data_set_names_become_per_tenant_and_a_study_made_before_keeps_its_data_set(
    engine: Engine, database_url: str
) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0009_tenant_study_names")
        row = old_dataset_row("shared", "a")
        connection.execute(sa.table("hpo_datasets", *map(sa.column, row)).insert(), row)
        other = old_dataset_row("shared", "b")
        # unique across tenants before
        with pytest.raises(sa.exc.IntegrityError), connection.begin_nested():
            connection.execute(sa.table("hpo_datasets", *map(sa.column, other)).insert(), other)

    database = Database(database_url)  # the service starting on it upgrades it
    try:
        assert database.schema_revisions == ("0009_tenant_study_names", head_revision())
        store = DatasetStore(database)
        ours = store.get("shared", "a")
        theirs = store.register("shared", "csv", "species", CSV, "b")
        assert theirs.dataset_id != ours.dataset_id
        with pytest.raises(Conflict, match="already exists"):  # the tenant's own name still
            store.register("shared", "csv", "species", CSV, "a")
        assert store.get("shared", "b").dataset_id == theirs.dataset_id
    finally:
        database.dispose()
    assert schema_differences(engine) == []
