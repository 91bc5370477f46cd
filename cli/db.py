"""``hpo db``: the study database's schema (run where the database is reachable).

``hpo db upgrade`` brings Optuna's tables (Optuna's own migrations) and the service's tables
(``service/storage/migrations``) to this release's schema; the API also upgrades the service's
tables when it starts, so the command is for a deploy step that runs before the new release
(a Kubernetes Job or init container, see deploy/README.md).
"""

from __future__ import annotations

import time
from typing import Annotated

import optuna
import typer
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError

from service.settings import Settings
from service.storage.database import Database, schema_lock
from service.storage.migrations import current_revision, head_revision, known_revisions

db_app = typer.Typer(help="The study database's schema: upgrade it, or show its revision.")


WaitOption = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for the database to take connections (a server still starting)",
    ),
]


@db_app.command("upgrade")
def upgrade(wait: WaitOption = 0.0) -> None:
    """Upgrade Optuna's tables and the service's own to this release's schema (idempotent)."""
    url = Settings().database_url
    engine = create_engine(url)
    if engine.dialect.name != "sqlite":  # a file needs no wait (its folder is made below)
        wait_for_database(engine, wait)
    with schema_lock(engine):  # two init containers at once would race on CREATE TABLE
        optuna_storage = optuna.storages.RDBStorage(url, skip_compatibility_check=True)
        optuna_storage.upgrade()
        typer.echo(f"optuna tables: {optuna_storage.get_current_version()}")
        optuna_storage.engine.dispose()
    engine.dispose()
    database = Database(url)
    before, after = database.schema_revisions
    database.dispose()
    typer.echo(f"service tables: {before or 'none'} -> {after}")


def wait_for_database(engine: Engine, wait_s: float, poll_s: float = 1.0) -> None:
    """Return once the database takes a connection; its last refusal once ``wait_s`` has
    passed (at once with ``wait_s`` 0). A refusal for a bad password or database name is
    waited out too: the server's message says which it was."""
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            with engine.connect():
                return
        except OperationalError:
            if time.monotonic() + poll_s > deadline:
                raise
            if not said:
                typer.echo(f"waiting up to {wait_s:g} s for the database to take connections")
                said = True
            time.sleep(poll_s)


@db_app.command("current")
def current() -> None:
    """The service tables' revision in the database, and this release's (head); exit status 1
    when the database is behind."""
    engine = create_engine(Settings().database_url)
    try:
        with engine.connect() as connection:
            revision = current_revision(connection)
    finally:
        engine.dispose()
    head = head_revision()
    if revision == head:
        typer.echo(f"service tables: {revision} (this release: {head})")
        return
    where = (
        "ahead of this release: a newer release upgraded them"
        if revision is not None and revision not in known_revisions()
        else "behind this release: run hpo db upgrade"
    )
    typer.echo(f"service tables: {revision or 'none'} (this release: {head}; {where})")
    raise typer.Exit(1)
