"""``/health``: the API answers and its database is reachable."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.context import tuner
from api.schemas import ERROR_RESPONSES, HealthBody

health = APIBlueprint(
    "health", __name__, abp_tags=[Tag(name="health")], abp_responses=ERROR_RESPONSES
)


@health.get("/health", responses={200: HealthBody})
def health_check() -> dict[str, Any]:
    """``{"status": "ok"}`` when the database answers; 503 otherwise."""
    tuner().check_database()
    return {"status": "ok"}
