"""Fixtures shared by the suites: real database servers, fresh databases per test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.postgres_server import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run."""
    server = PostgresServer().start()
    yield server
    server.remove()


@pytest.fixture
def new_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], str]:
    """Makes an empty database on the named backend and returns its URL."""

    def make(backend: str) -> str:
        name = f"hpo_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            path: Path = tmp_path_factory.mktemp("db") / f"{name}.db"
            return f"sqlite:///{path}"
        server: PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database(name)

    return make


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, new_database_url: Callable[[str], str]) -> str:
    """A fresh, empty database: once on SQLite, once on PostgreSQL."""
    return new_database_url(request.param)
