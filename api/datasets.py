"""``/datasets``: a user's own data sets, registered once and named by studies.

``POST /datasets?name=…&format=npz|csv[&label_column=…]`` takes the file as the raw body
(``application/octet-stream``, up to ``HPO_MAX_FILE_BYTES``); it is checked at once and a
malformed one is refused with a 422 naming the problem. A study then sets its trainer's
``"dataset": "registered:<name>"``. Workers read ``GET /datasets/{ref}/content?study_id=…``
(``ref``: name or id), in the tenant of the study they run for.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field

from api.auth import current_tenant
from api.context import tuner
from api.errors import no_content
from api.limits import whole_file_body
from api.schemas import ERROR_RESPONSES, FILE_BODY, MAX_ID, SchemaMadeOnce
from service.datasets import DatasetView, names_an_id
from service.errors import InvalidSpec
from service.tokens import DEFAULT_TENANT

_BLUEPRINT_OPTIONS: dict[str, Any] = {
    "url_prefix": "/datasets",
    "abp_tags": [Tag(name="datasets")],
    "abp_responses": ERROR_RESPONSES,
    "abp_security": [{"bearer": []}],
}
datasets = APIBlueprint("datasets", __name__, **_BLUEPRINT_OPTIONS)
# Reads that workers may make too (they fetch the data of the trials they run).
dataset_reads = APIBlueprint("dataset_reads", __name__, **_BLUEPRINT_OPTIONS)


class Registration(SchemaMadeOnce):
    """How to read the uploaded file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    format: Literal["npz", "csv"]
    label_column: str | None = Field(default=None, min_length=1, max_length=200)


class DatasetPath(BaseModel):
    reference: str = Field(min_length=1, max_length=128, description="the data set's name or id")


class DatasetScope(SchemaMadeOnce):
    """Whose data sets a read sees: the caller's tenant's, or with ``study_id`` (as a worker
    sends it, for the trial or job it runs) that study's tenant's."""

    model_config = ConfigDict(extra="forbid")
    study_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="read for this study (a worker's read)"
    )


class DatasetList(BaseModel):
    datasets: list[DatasetView]


@datasets.post("", responses={201: DatasetView}, openapi_extensions=FILE_BODY)
def register_dataset(query: Registration) -> tuple[dict[str, Any], int]:
    """Register a data set (the file is the body): 201 with its SHA-256, shape and classes."""
    content = whole_file_body("the data set's file")
    tenant = current_tenant() or DEFAULT_TENANT
    view = tuner().datasets.register(query.name, query.format, query.label_column, content, tenant)
    return view.model_dump(mode="json"), 201


@datasets.get("", responses={200: DatasetList})
def list_datasets() -> dict[str, Any]:
    """Every data set of the caller's tenant, newest first."""
    found = tuner().datasets.all(current_tenant())
    return DatasetList(datasets=found).model_dump(mode="json")


@datasets.delete("/<reference>", responses={204: None})
def delete_dataset(path: DatasetPath) -> Response:
    """Delete a data set and its file (409 while a study of the tenant names it)."""
    tuner().delete_dataset(path.reference, current_tenant() or DEFAULT_TENANT)
    return no_content()


@dataset_reads.get("/<reference>", responses={200: DatasetView})
def get_dataset(path: DatasetPath, query: DatasetScope) -> dict[str, Any]:
    """A data set's name, SHA-256, shape and classes."""
    return tuner().datasets.get(path.reference, _tenant_read(path, query)).model_dump(mode="json")


@dataset_reads.get("/<reference>/content")
def dataset_content(path: DatasetPath, query: DatasetScope) -> Response:
    """The file as registered; its SHA-256 in the ``X-Content-SHA256`` header."""
    view, content = tuner().datasets.content(path.reference, _tenant_read(path, query))
    response = Response(content, mimetype="application/octet-stream")
    response.headers["X-Content-SHA256"] = view.sha256
    response.headers["Content-Disposition"] = f'attachment; filename="{view.name}.{view.format}"'
    return response


def _tenant_read(path: DatasetPath, scope: DatasetScope) -> str | None:
    """The tenant whose data sets the read sees: the study's where one is named (404 where the
    caller may not see that study), else the caller's. A worker, which serves every tenant, names
    the study for a read by name (names are per tenant); by id it may read any."""
    tenant = current_tenant()
    if scope.study_id is not None:
        return tuner().study_tenant(scope.study_id, tenant)
    if tenant is None and not names_an_id(path.reference):
        problem = "a worker reads a data set by name for a study: give the study's id"
        raise InvalidSpec(problem, field="study_id")
    return tenant
