"""The exceptions the typed client raises: one per kind of answer a caller handles differently.

Each is an ``HPOError`` (``status`` and the JSON ``body``; ``problems`` names each field and its
problem), so code that catches ``HPOError`` keeps working.
"""

from __future__ import annotations

from typing import Any

from client.http_client import HPOError, TrialGone


class AuthError(HPOError):
    """401 (no or unknown token) or 403 (the token may not do this)."""


class NotFoundError(HPOError):
    """404: no such study or trial (or it belongs to another tenant)."""


class ConflictError(HPOError):
    """409: the request does not fit the object's state (budget spent, no best yet…)."""


class TrialNotFoundError(TrialGone, NotFoundError):
    """404 on a trial: its study was deleted (or it is another tenant's): stop it."""


class TrialConflictError(TrialGone, ConflictError):
    """409 on a trial: it is over (complete, pruned, failed) or another holds it: stop it."""


class InvalidRequestError(HPOError):
    """400 or 422: the request was refused as it stands; ``problems`` says which field and why."""


class StudyTimeout(TimeoutError):
    """``wait`` ran out of time before the study ended; ``study`` is its last known state."""

    def __init__(self, study: Any, timeout_s: float) -> None:
        super().__init__(
            f"study {study.study_id} still {study.state} after {timeout_s} s "
            f"({study.n_finished} of {study.n_trials} trials finished)"
        )
        self.study = study


_ERROR_OF_STATUS: dict[int, type[HPOError]] = {
    400: InvalidRequestError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    422: InvalidRequestError,
}


_TRIAL_GONE_OF_STATUS: dict[int, type[HPOError]] = {
    404: TrialNotFoundError,
    409: TrialConflictError,
}


def specific_error(error: HPOError) -> HPOError:
    """The exception of ``error``'s kind, carrying its status and body; a ``TrialGone`` (the
    trial is no longer the caller's to run) is one still, and of its status's kind too
    (``except ConflictError`` catches a report to a finished trial)."""
    kinds = _TRIAL_GONE_OF_STATUS if isinstance(error, TrialGone) else _ERROR_OF_STATUS
    kind = kinds.get(error.status, HPOError)
    return error if isinstance(error, kind) else kind(error.status, error.body)


def problems_of(error: HPOError) -> list[dict[str, str]]:
    """The ``{"field", "problem"}`` list of an error answer (empty where it has none); also
    ``error.problems``."""
    return error.problems
