"""What ``hpo serve`` warns of before it serves: a setting SQLite does not follow, and a
deployment whose tokens let no one in yet."""

from __future__ import annotations

from pathlib import Path

from cli.serve import start_warnings
from service.settings import Settings
from service.storage.database import Database
from service.tokens import Role, TokenStore


def test_several_processes_on_sqlite_are_one_and_it_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    settings = Settings(database_url=url, api_processes=3, require_tokens=False)
    [warning] = start_warnings(settings, Database(url))
    assert warning.startswith("HPO_API_PROCESSES=3 is not followed on SQLite")


def test_a_deployment_that_takes_no_token_yet_is_told_how_to_make_one(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    database = Database(url)
    [warning] = start_warnings(Settings(database_url=url, require_tokens=True), database)
    assert "hpo token create --tenant default" in warning
    store = TokenStore(database)
    store.create(Role.WORKER, None)  # a worker's token lets no user in
    revoked, _ = store.create(Role.USER, "default")
    store.revoke(revoked)
    assert len(start_warnings(Settings(database_url=url, require_tokens=True), database)) == 1
    store.create(Role.USER, "default")
    assert start_warnings(Settings(database_url=url, require_tokens=True), database) == []
    with_static = Settings(database_url=url, require_tokens=True, api_tokens=["a-token-0123456789"])
    assert start_warnings(with_static, Database(f"sqlite:///{tmp_path / 'other.db'}")) == []
