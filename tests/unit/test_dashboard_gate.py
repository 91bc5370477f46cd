"""The dashboard's token gate on a stack with tokens and on an open one (a stack without tokens):
the link an operator is given, ``/?token=…``, opens the dashboard on both."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.test import Client

from cli.access_log import redacted_query
from cli.dashboard import COOKIE_NAME, TokenGate
from service.storage.database import Database
from service.tokens import Role, TokenStore

TOKEN = "gate-test-token-0123456789"


def dashboard(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"the dashboard"]


def gate(tmp_path: Path, *, required: bool) -> Client:
    database = Database(f"sqlite:///{tmp_path / 'service.db'}")
    return Client(TokenGate(dashboard, TokenStore(database, frozenset({TOKEN})), required))


def test_on_a_stack_with_tokens_a_wrong_token_is_401_and_a_good_one_a_cookie(
    tmp_path: Path,
) -> None:
    client = gate(tmp_path, required=True)
    assert client.get("/?token=wrong").status_code == 401
    opened = client.get(f"/dashboard?token={TOKEN}&x=1")
    assert opened.status_code == 303 and opened.headers["Location"] == "/dashboard?x=1"
    assert f"{COOKIE_NAME}={TOKEN}" in opened.headers["Set-Cookie"]
    assert client.get("/dashboard").get_data() == b"the dashboard"


def test_on_an_open_stack_a_token_in_the_link_is_dropped_and_the_dashboard_opens(
    tmp_path: Path,
) -> None:
    client = gate(tmp_path, required=False)
    opened = client.get("/dashboard?token=anything")
    assert opened.status_code == 303 and opened.headers["Location"] == "/dashboard"
    assert "Set-Cookie" not in opened.headers
    assert client.get("/dashboard").get_data() == b"the dashboard"


def test_another_tenant_s_good_token_is_403_saying_why(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'service.db'}")
    store = TokenStore(database)
    _, acme = store.create(Role.USER, "acme")
    client = Client(TokenGate(dashboard, store, True))
    refused = client.get(f"/?token={acme}")
    assert refused.status_code == 403 and b"tenant default only" in refused.get_data()
    assert client.get("/?token=unknown").status_code == 401


def test_a_database_out_of_reach_is_503_with_retry_after(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    database = Database(f"sqlite:///{folder / 'service.db'}")
    store = TokenStore(database)
    _, operator = store.create(Role.USER, "default")
    database.dispose()
    shutil.rmtree(folder)  # SQLite cannot open a file in a folder that is gone
    client = Client(TokenGate(dashboard, store, True))
    answer = client.get("/dashboard", headers={"Authorization": f"Bearer {operator}"})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"


def test_the_way_on_after_the_token_stays_on_the_dashboard(tmp_path: Path) -> None:
    """``/%5Cevil.example?token=…`` answered ``Location: /\\evil.example``, which browsers read
    as //evil.example: another site."""
    client = gate(tmp_path, required=True)
    for path, way_on in [
        ("/%5Cevil.example", "/evil.example"),
        ("/%2F%2Fevil.example", "/evil.example"),
        ("/%5C%5Cevil.example/x", "/evil.example/x"),
        ("/dash%5Cboard", "/dash%5Cboard"),
    ]:
        opened = client.get(f"{path}?token={TOKEN}")
        assert (opened.status_code, opened.headers["Location"]) == (303, way_on), path


def test_the_access_log_writes_no_secret_of_a_query_however_its_name_is_written() -> None:
    """``/?%74oken=…`` logged the dashboard's token whole (the server decodes the name)."""
    for query, logged in [
        ("token=abc&x=1", "token=…&x=1"),
        ("%74oken=abc", "%74oken=…"),
        ("x=1&LEASE=abc", "x=1&LEASE=…"),
        ("tokens=abc&token", "tokens=abc&token"),  # another field; a name without a value
    ]:
        assert redacted_query(query) == logged
