"""Every log line made while serving a request names the study and trial the request is about."""

from __future__ import annotations

from flask import Flask, request

from service.errors import ServiceError
from service.json_logs import set_log_context
from service.tuner import Tuner


def register_log_context(app: Flask, tuner: Tuner) -> None:
    """Set the log context from the URL's ``study_id`` / ``trial_id`` before each request.

    The context stays set until the next request of the same thread, so gunicorn's access line,
    written after the response, carries the ids too.
    """

    @app.before_request
    def _name_study_and_trial() -> None:
        args = request.view_args or {}
        trial_id = args.get("trial_id")
        study_id = args.get("study_id")
        if study_id is None and trial_id is not None:
            study_id = _study_of(tuner, trial_id)
        set_log_context(study_id, trial_id)


def _study_of(tuner: Tuner, trial_id: int) -> int | None:
    try:
        return tuner.trials.study_of(trial_id)
    except ServiceError:  # unknown, or no database: the view answers; the line names the trial
        return None
