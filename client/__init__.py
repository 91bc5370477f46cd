"""Python client of the HPO service's HTTP API.

``HPOClient`` answers with typed models (``client.models``) for programs that call the
service; ``HPOJSONClient`` answers with plain JSON (the workers and the CLI use it).
"""

from client.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    StudyTimeout,
    TrialConflictError,
    TrialNotFoundError,
)
from client.http_client import HPOError, HPOJSONClient, TrialGone
from client.models import Assignment, Best, Importance, Pareto, Study, Trial
from client.transport import ServiceUnreachable
from client.typed_client import HPOClient

__all__ = [
    "Assignment",
    "AuthError",
    "Best",
    "ConflictError",
    "HPOClient",
    "HPOError",
    "HPOJSONClient",
    "Importance",
    "InvalidRequestError",
    "NotFoundError",
    "Pareto",
    "ServiceUnreachable",
    "Study",
    "StudyTimeout",
    "Trial",
    "TrialConflictError",
    "TrialGone",
    "TrialNotFoundError",
]
