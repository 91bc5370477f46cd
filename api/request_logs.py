"""Every log line made while serving a request names the study and trial the request is about."""

from __future__ import annotations

from flask import Flask, request

from service.errors import ServiceError
from service.json_logs import set_log_context
from service.tuner import Tuner


def register_log_context(app: Flask, tuner: Tuner) -> None:
    """Set the log context from the URL's ``study_id`` / ``trial_id`` before each request.

    The context stays set until the next request of the same thread, so gunicorn's access line,
    written after the response, carries the ids too. The URL's ids are set before any other
    hook (a request refused by the token check or a limit was logged with the ids of the
    thread's previous request); a trial's study is looked up once the request got past them.
    """
    app.before_request_funcs.setdefault(None, []).insert(0, _name_from_the_url)

    @app.before_request
    def _name_the_trial_s_study() -> None:
        study_id, trial_id = _ids_in_the_url()
        if study_id is None and trial_id is not None:
            set_log_context(_study_of(tuner, trial_id), trial_id)


def _name_from_the_url() -> None:
    set_log_context(*_ids_in_the_url())


def _ids_in_the_url() -> tuple[int | None, int | None]:
    args = request.view_args or {}
    return args.get("study_id"), args.get("trial_id")


def _study_of(tuner: Tuner, trial_id: int) -> int | None:
    try:
        return tuner.trials.study_of(trial_id)
    except ServiceError:  # unknown, or no database: the view answers; the line names the trial
        return None
