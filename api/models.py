"""Trials' records beside their values: provenance, best checkpoints, and the best model.

- ``POST /trials/{id}/provenance`` (worker, with the lease): seed, trainer package and version,
  the data's SHA-256 and split; merged into the trial's record.
- ``PUT /trials/{id}/checkpoint?lease=…`` (worker, while the trial runs): the safetensors file of
  the trial's best epoch, body ``application/octet-stream`` up to ``HPO_MAX_FILE_BYTES``.
- ``GET /trials/{id}/checkpoint``: those bytes; ``GET /studies/{id}/best/model``: the best trial's.
"""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from api.auth import current_tenant, lease_of_caller
from api.context import tuner
from api.errors import strictly
from api.limits import whole_file_body
from api.schemas import ERROR_RESPONSES, FILE_BODY, SchemaMadeOnce, StudyPath, TrialPath
from service.trial_provenance import TrialProvenance
from service.views import TrialView

trial_records = APIBlueprint(
    "trial_records",
    __name__,
    url_prefix="/trials",
    abp_tags=[Tag(name="trials")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)
best_models = APIBlueprint(
    "best_models",
    __name__,
    url_prefix="/studies",
    abp_tags=[Tag(name="studies")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)
SAFETENSORS_TYPE = "application/octet-stream"


class LeaseQuery(SchemaMadeOnce):
    model_config = ConfigDict(extra="forbid")
    lease: str | None = Field(default=None, max_length=64)


class ProvenanceReport(TrialProvenance):
    """What the worker states about the trial, with its lease."""

    lease: str | None = Field(default=None, max_length=64)


class CheckpointKept(BaseModel):
    trial_id: int
    sha256: str


@trial_records.post("/<int:trial_id>/provenance", responses={200: TrialView})
def record_provenance(path: TrialPath, body: ProvenanceReport) -> dict[str, Any]:
    """Record where the running trial's result comes from (fields left out are kept)."""
    update = TrialProvenance.model_validate(strictly(body).model_dump(exclude={"lease"}))
    view = tuner().record_provenance(
        path.trial_id, update, lease_of_caller(body.lease), current_tenant()
    )
    return view.model_dump(mode="json")


@trial_records.put(
    "/<int:trial_id>/checkpoint", responses={200: CheckpointKept}, openapi_extensions=FILE_BODY
)
def put_checkpoint(path: TrialPath, query: LeaseQuery) -> dict[str, Any]:
    """Keep the running trial's best checkpoint (a safetensors file carrying ``hpo.model``)."""
    content = whole_file_body("the checkpoint file")
    digest = tuner().put_checkpoint(
        path.trial_id, content, lease_of_caller(query.lease), current_tenant()
    )
    return CheckpointKept(trial_id=path.trial_id, sha256=digest).model_dump()


@trial_records.get("/<int:trial_id>/checkpoint")
def get_checkpoint(path: TrialPath) -> Response:
    """The trial's best checkpoint (safetensors); 404 if it has none."""
    content = tuner().checkpoint(path.trial_id, current_tenant())
    return _file(content, f"trial-{path.trial_id}.safetensors")


@best_models.get("/<int:study_id>/best/model")
def best_model(path: StudyPath) -> Response:
    """The best trial's checkpoint (safetensors); its trial id in ``X-HPO-Trial-Id``."""
    best, content = tuner().best_model(path.study_id, current_tenant())
    response = _file(content, f"study-{path.study_id}-best.safetensors")
    response.headers["X-HPO-Trial-Id"] = str(best.trial_id)
    return response


def _file(content: bytes, filename: str) -> Response:
    response = Response(content, mimetype=SAFETENSORS_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
