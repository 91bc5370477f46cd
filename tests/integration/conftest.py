"""A running service stack (Redis, API, Celery worker) per module and per database backend; the
service's database alone per test and backend."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from cli.local_stack import LocalStack
from service.storage.database import Database
from tests.conftest import BACKENDS


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The whole service on real processes, against a fresh database of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('stack') / 'hpo.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database(
            f"stack_{uuid.uuid4().hex[:10]}"
        )
    running = LocalStack(url).start()
    yield running
    running.stop()


def unique(name: str) -> str:
    """A study name no other test uses."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The service's database on a fresh database of each backend, disposed of after the test."""
    opened = Database(database_url)
    yield opened
    opened.dispose()
