"""Where a view finds the service it calls: on the app, never in a module global."""

from __future__ import annotations

from flask import current_app

from service.tuner import Tuner

TUNER_EXTENSION = "hpo.tuner"


def tuner() -> Tuner:
    """The app's service facade."""
    found: Tuner = current_app.extensions[TUNER_EXTENSION]
    return found
