"""Alembic migrations of the service's own tables (never Optuna's: Optuna migrates its own).

The environment is configured here, in code: no ``alembic.ini``. Revisions live in
``versions/``; the version row lives in :data:`VERSION_TABLE`, apart from Optuna's
``alembic_version``. A database made before migrations existed (by ``create_all``) has the
service's tables but no version row: :func:`recognised_revision` reads which revision its tables
match, and :func:`upgrade_to_head` stamps it there before upgrading.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy.engine.reflection import Inspector

from service.errors import Unavailable

VERSION_TABLE = "hpo_alembic_version"
SERVICE_TABLE_PREFIX = "hpo_"
MIGRATIONS_FOLDER = Path(__file__).parent


def is_service_table(name: str | None) -> bool:
    """Whether a table is the service's (migrated here) rather than Optuna's or the version table."""
    return bool(name) and str(name).startswith(SERVICE_TABLE_PREFIX) and name != VERSION_TABLE


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration that runs on ``connection`` (``env.py`` takes it from here);
    without one, it only reads the revisions."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_FOLDER))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision in ``versions/``: the schema of today's ``tables.py``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("service/storage/migrations/versions holds no revision")
    return head


class SchemaAhead(Unavailable):
    """The database was upgraded by a newer release: this one does not know its revision."""

    def __init__(self, revision: str) -> None:
        super().__init__(
            f"the database's service tables are at revision {revision!r}, which this release "
            f"does not know (its newest is {head_revision()!r}): a newer release upgraded them. "
            "Run that release, or restore the database from before the upgrade (a release "
            "cannot undo a later one's migrations)"
        )


def known_revisions() -> set[str]:
    """Every revision in ``versions/``."""
    return {
        script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()
    }


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, or None where there is no version row."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _columns(inspector: Inspector, table: str) -> set[str]:
    return {column["name"] for column in inspector.get_columns(table)}


def _unique_together(inspector: Inspector, table: str) -> list[list[str]]:
    return [list(unique["column_names"]) for unique in inspector.get_unique_constraints(table)]


# Newest first: what each revision left in the database that the revisions before it did not.
SCHEMA_MARKS: list[tuple[str, Callable[[Inspector, set[str]], bool]]] = [
    (
        "0010_tenant_dataset_names",
        lambda inspector, tables: (
            "hpo_datasets" in tables
            and ["tenant", "name"] in _unique_together(inspector, "hpo_datasets")
        ),
    ),
    (
        "0009_tenant_study_names",
        lambda inspector, tables: (
            "hpo_studies" in tables and "optuna_name" in _columns(inspector, "hpo_studies")
        ),
    ),
    (
        "0008_token_expiry",
        lambda inspector, tables: (
            "hpo_tokens" in tables and "expires_at" in _columns(inspector, "hpo_tokens")
        ),
    ),
    (
        "0007_ask_keys",
        lambda inspector, tables: (
            "hpo_trial_leases" in tables and "ask_key" in _columns(inspector, "hpo_trial_leases")
        ),
    ),
    (
        "0006_jobs_datasets_artifacts",
        lambda _, tables: {"hpo_study_jobs", "hpo_datasets", "hpo_artifacts"} <= tables,
    ),
    ("0005_study_budget", lambda inspector, _: "n_trials" in _columns(inspector, "hpo_studies")),
    ("0004_tenants_and_tokens", lambda _, tables: "hpo_tokens" in tables),
    (
        "0003_lease_sent",
        lambda inspector, tables: (
            "hpo_trial_leases" in tables and "sent" in _columns(inspector, "hpo_trial_leases")
        ),
    ),
    ("0002_trial_leases", lambda _, tables: "hpo_trial_leases" in tables),
    ("0001_first_release", lambda _, tables: "hpo_studies" in tables),
]


def recognised_revision(connection: Connection) -> str | None:
    """The revision an unversioned database's tables match, or None where it has none of them."""
    inspector = inspect(connection)
    tables = set(inspector.get_table_names())
    if "hpo_studies" not in tables:
        return None
    for revision, made_by in SCHEMA_MARKS:
        if made_by(inspector, tables):
            return revision
    return None


def upgrade_to_head(connection: Connection) -> tuple[str | None, str]:
    """Bring the service's tables to today's schema; returns the revisions before and after.

    An unversioned database with tables is stamped at the revision they match first. Call it
    inside a transaction (``engine.begin()``): on PostgreSQL the whole upgrade is then atomic.
    """
    config = alembic_config(connection)
    before = current_revision(connection)
    if before is not None and before not in known_revisions():
        raise SchemaAhead(before)
    if before is None:
        before = recognised_revision(connection)
        if before is not None:
            command.stamp(config, before)
    command.upgrade(config, "head")
    return before, head_revision()
