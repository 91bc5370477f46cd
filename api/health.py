"""``/health``: the API answers and its database is reachable."""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag

from api.context import tuner

health = APIBlueprint("health", __name__, abp_tags=[Tag(name="health")])


@health.get("/health")
def health_check() -> dict[str, Any]:
    """``{"status": "ok"}`` when the database answers; 503 otherwise."""
    tuner().check_database()
    return {"status": "ok"}
