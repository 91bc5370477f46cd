"""``hpo serve``: the API under gunicorn (threads per process; one process on SQLite)."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from gunicorn.app.base import BaseApplication
from sqlalchemy import make_url

from api import create_app
from cli.access_log import RedactingAccessLog
from cli.errors import SettingError, refuse_placeholders
from service.json_logs import configure_json_logging, logging_config
from service.long_lived import freeze_startup_objects
from service.settings import Settings
from service.storage.database import Database, make_private_folder
from service.tokens import Role, TokenStore, has_expired

logger = logging.getLogger(__name__)


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, lock_file: IO[str] | None = None) -> None:
        self._settings = settings
        self._lock_file = lock_file
        super().__init__()

    def load_config(self) -> None:
        settings = self._settings
        sqlite = settings.database_url.startswith("sqlite")
        options: dict[str, Any] = {
            "bind": f"{settings.host}:{settings.port}",
            # SQLite serialises writers in one file: a single process keeps the per-study lock whole.
            "workers": 1 if sqlite else settings.api_processes,
            "threads": settings.api_threads,
            "worker_class": "gthread",
            "timeout": 120,
            "graceful_timeout": 20,
            # Longer than clients' idle gaps between reports, so that the server seldom closes a
            # kept-alive connection just as a request is sent on it.
            "keepalive": 75,
            "accesslog": "-",
            "logger_class": RedactingAccessLog,
            # gunicorn's control socket sits at one path per user (~/.gunicorn/gunicorn.ctl): a
            # second API on the host would take it over. Nothing here uses it.
            "control_socket_disable": True,
            "loglevel": settings.log_level.lower(),
            "logconfig_dict": logging_config(settings.log_level),  # JSON lines, with the ids
            "post_fork": self._post_fork,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def _post_fork(self, server: Any, worker: Any) -> None:
        """The worker lets go of its copy of the sole-API lock: the master alone holds it, so
        that a master killed (and its workers gone orphan for a moment) frees it at once."""
        if self._lock_file is not None:
            self._lock_file.close()

    def load(self) -> Any:
        app = create_app(self._settings)
        freeze_startup_objects()  # in each gunicorn worker, before its first request
        return app


def serve(settings: Settings) -> None:
    """Run the API until stopped. The database is opened (its service tables upgraded) here
    first: a URL that is wrong or a server out of reach is told as every command tells it,
    naming HPO_DATABASE_URL, not as a traceback in each of gunicorn's worker processes."""
    configure_json_logging(settings.log_level)
    refuse_placeholders(settings)
    # The lock first: a second API refused must not upgrade the tables under the running one.
    with sole_api_of(settings.database_url) as lock_file:
        database = Database(settings.database_url)
        for warning in start_warnings(settings, database):
            logger.warning("%s", warning)
        database.dispose()
        empty_metrics_directory()
        _Gunicorn(settings, lock_file).run()


def empty_metrics_directory() -> None:
    """Remove the last run's files from ``PROMETHEUS_MULTIPROC_DIR`` (the API's own): each
    gunicorn process writes its counts there, and a restarted API (a container's directory
    outlives it) would otherwise add the processes of its earlier runs to every scrape."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not Path(directory).is_dir():
        return
    for counts in Path(directory).glob("*.db"):
        counts.unlink(missing_ok=True)


def start_warnings(settings: Settings, database: Database) -> list[str]:
    """What an operator should hear before the API serves: a setting it does not follow, and a
    deployment that lets no one in yet."""
    warnings = []
    if settings.database_url.startswith("sqlite") and settings.api_processes > 1:
        warnings.append(
            f"HPO_API_PROCESSES={settings.api_processes} is not followed on SQLite: one API "
            "process guards the studies' budgets in memory (PostgreSQL for several)"
        )
    usable = [
        record
        for record in TokenStore(database).all()
        if record.role == Role.USER.value and not record.revoked and not has_expired(record)
    ]
    if settings.tokens_required() and not settings.accepted_tokens() and not usable:
        warnings.append(
            "no token is accepted yet: every request but /health and the API document answers "
            "401; make one with hpo token create --tenant default (and --worker for workers), "
            "or set HPO_API_TOKENS"
        )
    return warnings


def _sqlite_file(database_url: str) -> str | None:
    """The file a SQLite URL names (a ``file:`` URI's path too); ``None`` for another database
    or one in memory."""
    if not database_url.startswith("sqlite"):
        return None
    path = make_url(database_url).database or ""
    if path.startswith("file:"):  # sqlite:///file:/data/hpo.db?uri=true
        if "mode=memory" in database_url:
            return None
        path = path.removeprefix("file:").split("?", 1)[0]
    return None if path in ("", ":memory:") else path


@contextmanager
def sole_api_of(database_url: str) -> Iterator[IO[str] | None]:
    """While the block runs, this process is the only API on a SQLite database: an exclusive
    lock on ``<database>.api-lock`` (let go when the process ends, however it ends). A study's
    budget is guarded by a lock in the API process's memory on SQLite: a second API process on
    the same file started more trials than the budget. PostgreSQL's advisory locks guard it
    across processes: no file lock there."""
    path = _sqlite_file(database_url)
    if path is None:
        yield None
        return
    make_private_folder(Path(path).parent)  # before Database makes it
    with open(f"{path}.api-lock", "a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            raise SettingError(
                f"another API process (pid {holder}) serves the SQLite database {path} "
                "(HPO_DATABASE_URL): on SQLite one API process guards each study's budget; stop "
                "that one, or use PostgreSQL for several"
            ) from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        yield lock_file
