"""``hpo serve``: the API under gunicorn (threads per process; one process on SQLite)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from api import create_app
from service.json_logs import logging_config
from service.long_lived import freeze_startup_objects
from service.settings import Settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
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
            "loglevel": settings.log_level.lower(),
            "logconfig_dict": logging_config(settings.log_level),  # JSON lines, with the ids
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = create_app(self._settings)
        freeze_startup_objects()  # in each gunicorn worker, before its first request
        return app


def serve(settings: Settings) -> None:
    """Run the API until stopped."""
    _Gunicorn(settings).run()
