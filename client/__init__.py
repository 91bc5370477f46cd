"""Python client of the HPO service's HTTP API.

``TypedHPOClient`` answers with typed models (``client.models``) for programs that call the
service; ``HPOClient`` answers with plain JSON (the workers and the CLI use it).
"""

from client.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StudyTimeout,
)
from client.http_client import HPOClient, HPOError, TrialGone
from client.models import Assignment, Best, Importance, Study, Trial
from client.typed_client import TypedHPOClient

__all__ = [
    "Assignment",
    "AuthError",
    "Best",
    "ConflictError",
    "HPOClient",
    "HPOError",
    "Importance",
    "InvalidRequestError",
    "NotFoundError",
    "Study",
    "StudyTimeout",
    "Trial",
    "TrialGone",
    "TypedHPOClient",
]
