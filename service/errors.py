"""Domain errors. ``api/`` maps each to one HTTP status in one place."""

from __future__ import annotations

from collections.abc import Sequence

# How long a 503 tells the caller to wait (its Retry-After): the workers count their retries by it.
RETRY_AFTER_S = 5


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidSpec(ServiceError):
    """A study definition or request body that cannot be accepted (→ 422)."""

    def __init__(self, message: str, *, field: str, others: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message, field=field)
        self.problems: list[tuple[str, str]] = [(field, message), *others]


class NotFound(ServiceError):
    """No study or trial with that id (→ 404)."""


class Conflict(ServiceError):
    """The request does not fit the object's current state (→ 409)."""


class BudgetExhausted(Conflict):
    """No trial may be started: the budget is spent, or every slot is taken (→ 409)."""


class Unavailable(ServiceError):
    """A backing part (database, broker) cannot be reached right now (→ 503)."""
