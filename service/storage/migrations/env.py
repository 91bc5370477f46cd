"""Alembic environment: run on the connection :func:`service.storage.migrations.alembic_config`
hands over, against the service's tables only, with a version table of the service's own."""

from __future__ import annotations

from alembic import context

from service.storage.migrations import VERSION_TABLE, is_service_table
from service.storage.tables import ServiceTable


def _include_name(name: str | None, type_: str, _parents: object) -> bool:
    """Autogenerate compares the service's tables only: Optuna's are Optuna's to migrate."""
    return type_ != "table" or is_service_table(name)


def run_migrations_online() -> None:
    """Migrate on the shared connection (there is no offline, SQL-script mode)."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run the migrations through service.storage.migrations.upgrade_to_head")
    context.configure(
        connection=connection,
        target_metadata=ServiceTable.metadata,
        version_table=VERSION_TABLE,
        include_name=_include_name,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
