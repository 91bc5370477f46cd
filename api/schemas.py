"""Bodies the API document describes beside the service's read models: errors and health."""

from __future__ import annotations

from typing import Annotated, Any

from flask_openapi3.models import SecurityScheme
from pydantic import BaseModel, Field

from service.ids import MAX_ID as MAX_ID  # the largest id: the API's path ids stop there

_SCHEMAS: dict[type[BaseModel], dict[str, Any]] = {}


class SchemaMadeOnce(BaseModel):
    """A request's header (or query) model whose JSON schema is made once: flask-openapi3 makes
    it on every request only to read its fields' names (about 0.9 ms, on the ask's path)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Pydantic's schema; called without arguments (the per-request call), made once."""
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _SCHEMAS:
            _SCHEMAS[cls] = super().model_json_schema()
        return _SCHEMAS[cls]


def _id(of: str) -> Any:
    return Field(ge=1, le=MAX_ID, description=f"the {of}'s id")


class StudyPath(BaseModel):
    study_id: Annotated[int, _id("study")]


class TrialPath(BaseModel):
    trial_id: Annotated[int, _id("trial")]


class JobPath(BaseModel):
    job_id: Annotated[int, _id("job")]


class ProblemBody(BaseModel):
    """One thing wrong with a request: where (a dotted path into it, or a header) and what."""

    field: str
    problem: str


class ErrorBody(BaseModel):
    """Every error answer: a summary and the problems, each naming its field."""

    error: str
    problems: list[ProblemBody]


class HealthBody(BaseModel):
    """The API answers and its database is reachable."""

    status: str


# Every error an endpoint may answer, documented once for every blueprint.
ERROR_RESPONSES: dict[Any, Any] = {
    status: ErrorBody for status in (400, 401, 403, 404, 405, 409, 413, 415, 422, 503)
}
BEARER_SECURITY: dict[str, SecurityScheme | dict[str, Any]] = {
    "bearer": SecurityScheme(type="http", scheme="bearer")
}

# The endpoints whose body is a file, not JSON (a data set, a checkpoint): ``HPO_MAX_FILE_BYTES``
# applies to them (``api/limits.py``), and their body as the API document describes it.
FILE_ENDPOINTS = frozenset({"datasets.register_dataset", "trial_records.put_checkpoint"})
FILE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
