"""The worker's logs: JSON lines, each naming the study and trial its task is about.

Celery leaves logging alone when a receiver of ``setup_logging`` exists; ours sets the JSON lines
up. Around each trial task the log context is the message's study and trial, so every line that
the task, the trainer and the HTTP client write names them.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun

from service.json_logs import configure_json_logging, set_log_context

logger = logging.getLogger(__name__)


def connect_log_signals() -> None:
    """Log JSON lines from the worker, with each trial task's ids (idempotent)."""
    setup_logging.connect(_json_logs, weak=False, dispatch_uid="hpo-json-logs")
    task_prerun.connect(_enter_trial, weak=False, dispatch_uid="hpo-log-enter-trial")
    task_postrun.connect(_leave_trial, weak=False, dispatch_uid="hpo-log-leave-trial")


def _json_logs(loglevel: str | int | None = None, **_: Any) -> None:
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) else loglevel
    configure_json_logging(str(level or "INFO"))


def _enter_trial(
    args: tuple[Any, ...] | None = None, kwargs: dict[str, Any] | None = None, **_: Any
) -> None:
    study_id, trial_id = _ids(args, kwargs)
    set_log_context(study_id, trial_id)
    if study_id is not None or trial_id is not None:
        logger.info("task started")


def _leave_trial(
    args: tuple[Any, ...] | None = None,
    kwargs: dict[str, Any] | None = None,
    retval: Any = None,
    **_: Any,
) -> None:
    if _ids(args, kwargs) != (None, None):
        logger.info("task ended: %s", retval)
    set_log_context(None, None)


def _ids(
    args: tuple[Any, ...] | None, kwargs: dict[str, Any] | None
) -> tuple[int | None, int | None]:
    """The study and trial ids of a task's message (a trial assignment or a study job), where it
    names them; the message is the task's one argument, positional or named."""
    messages = [*(args or ()), *(kwargs or {}).values()]
    message = next((m for m in messages if isinstance(m, dict)), {})
    study_id, trial_id = message.get("study_id"), message.get("trial_id")
    return (
        study_id if isinstance(study_id, int) else None,
        trial_id if isinstance(trial_id, int) else None,
    )
