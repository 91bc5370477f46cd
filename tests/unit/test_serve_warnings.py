"""What ``hpo serve`` warns of before it serves: a setting SQLite does not follow, and a
deployment whose tokens let no one in yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cli.processes import free_port
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


def test_the_api_and_the_dashboard_refuse_deploys_placeholders_naming_each(
    tmp_path: Path,
) -> None:
    """deploy/kubernetes/secrets.yaml applied as it stands: the API took the operator token
    change-me-operator-token, which anyone who read the repository knows."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HPO_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        HPO_DATABASE_URL=f"sqlite:///{tmp_path / 'hpo.db'}",
        HPO_API_TOKENS='["a-token-of-our-own-0123456789", "change-me-operator-token"]',
        HPO_METRICS_TOKEN="change-me-metrics-token",
        HPO_PORT=str(free_port()),
    )
    hpo = Path(sys.executable).with_name("hpo")
    for command in (["serve"], ["dashboard", "--port", str(free_port())]):
        ran = subprocess.run(
            [str(hpo), *command], env=env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 1, ran.stderr
        assert "HPO_API_TOKENS, HPO_METRICS_TOKEN still hold a placeholder" in ran.stderr
        assert not (tmp_path / "hpo.db").exists()  # refused before anything was opened
    held = Settings(database_url="postgresql+psycopg://hpo:change-me-pw@db/hpo")
    assert held.placeholder_settings() == ["HPO_DATABASE_URL"]
    # A folder, a host or a database of that name is no placeholder: only the password counts.
    for url in ("sqlite:////home/u/change-me-later/hpo.db", "postgresql://u:pw@change-me/db"):
        assert Settings(database_url=url).placeholder_settings() == []
    assert Settings(worker_tokens=["change-me-worker"]).placeholder_settings() == [
        "HPO_WORKER_TOKENS"
    ]
