"""Structured logs: one JSON object per line, with the study and trial a line concerns.

Every process (the API under gunicorn, the Celery worker, the CLI's servers) logs through
:func:`logging_config`. Where a request or a task names a study or a trial, the code that handles
it calls :func:`set_log_context`; :class:`LogContextFilter` then copies ``study_id`` and
``trial_id`` onto every record made in that thread (or task) until the context is set again.
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from typing import Any

import optuna
from pythonjsonlogger.json import JsonFormatter

STUDY_ID: ContextVar[int | None] = ContextVar("hpo_study_id", default=None)
TRIAL_ID: ContextVar[int | None] = ContextVar("hpo_trial_id", default=None)
LOG_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"


def set_log_context(study_id: int | None = None, trial_id: int | None = None) -> None:
    """Name the study and trial that the current request or task is about (``None``: none)."""
    STUDY_ID.set(study_id)
    TRIAL_ID.set(trial_id)


def log_context() -> tuple[int | None, int | None]:
    """The ``(study_id, trial_id)`` the current request or task is about."""
    return STUDY_ID.get(), TRIAL_ID.get()


class LogContextFilter(logging.Filter):
    """Adds ``study_id`` and ``trial_id`` from the current context to each record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, variable in (("study_id", STUDY_ID), ("trial_id", TRIAL_ID)):
            value = variable.get()
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonLogFormatter(JsonFormatter):
    """JSON lines with ``time``, ``level``, ``logger``, ``pid``, ``message`` and any extras."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault(
            "rename_fields",
            {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        )
        super().__init__(LOG_FIELDS, *args, **kwargs)


def logging_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document: JSON lines on stderr (gunicorn's access log on
    stdout), the context filter on every handler, ``level`` for the service's loggers."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "json",
        "filters": ["context"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": LogContextFilter}},
        "formatters": {"json": {"()": JsonLogFormatter}},
        "handlers": {
            "console": {**handler, "stream": "ext://sys.stdout"},
            "error_console": {**handler, "stream": "ext://sys.stderr"},
        },
        "root": {"level": level.upper(), "handlers": ["error_console"]},
        "loggers": {
            "gunicorn.error": {
                "level": level.upper(),
                "handlers": ["error_console"],
                "propagate": False,
            },
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }


def configure_json_logging(level: str) -> None:
    """Log JSON lines at ``level`` from this process, unless its logging is set up already (by
    gunicorn from :func:`logging_config`, or by a test runner), like ``logging.basicConfig``.
    Optuna's lines go the same way, instead of through its own plain-text handler."""
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    if logging.getLogger().handlers:
        return
    logging.config.dictConfig(logging_config(level))
    logging.captureWarnings(True)
