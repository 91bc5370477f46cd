"""Study jobs over HTTP: the vault (``evaluate``), ensembles, and the workers' side of every job.

``POST /studies/{id}/evaluate`` and ``POST /studies/{id}/ensemble`` answer 202 with the new job
(poll ``GET /jobs/{job_id}`` until its state is ``done`` or ``failed``), or 200 with
the job there already is for the same model: a model's test split is scored once.
Workers start a job with ``POST /jobs/{id}/start`` and send its outcome to ``/jobs/{id}/result``.
"""

from __future__ import annotations

from typing import Any

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.auth import current_tenant
from api.context import tuner
from api.errors import strictly
from api.schemas import ERROR_RESPONSES, JobPath, StudyPath
from service.jobs import JobMessage, JobView
from service.vault import MAX_ENSEMBLE

study_jobs = APIBlueprint(
    "study_jobs",
    __name__,
    url_prefix="/studies",
    abp_tags=[Tag(name="vault and ensembles")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)
jobs = APIBlueprint(
    "jobs",
    __name__,
    url_prefix="/jobs",
    abp_tags=[Tag(name="jobs")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)
MAX_REASON_LENGTH = 2000


class EvaluationRequest(BaseModel):
    """Which model's test split to score: a trial's, the top ``ensemble_k`` trials' ensemble,
    or (neither given) the best trial's."""

    model_config = ConfigDict(extra="forbid")
    trial_id: int | None = Field(default=None, ge=0)
    ensemble_k: int | None = Field(default=None, ge=2, le=MAX_ENSEMBLE)

    @model_validator(mode="before")
    @classmethod
    def _no_body_means_the_best(cls, data: Any) -> Any:
        return {} if data is None else data


class EnsembleRequest(BaseModel):
    """How many of the best trials to average."""

    model_config = ConfigDict(extra="forbid")
    k: int = Field(ge=2, le=MAX_ENSEMBLE)


class JobList(BaseModel):
    jobs: list[JobView]


class JobOutcome(BaseModel):
    """A worker's outcome of a job: its ``result``, or the ``reason`` it has none."""

    model_config = ConfigDict(extra="forbid")
    result: dict[str, Any] | None = None
    reason: str | None = Field(default=None, min_length=1, max_length=MAX_REASON_LENGTH)

    @model_validator(mode="after")
    def _result_or_reason(self) -> JobOutcome:
        if self.result is None and self.reason is None:
            raise ValueError("give the result, or the reason there is none")
        if self.result is not None and self.reason is not None:
            raise ValueError("give the result or the reason there is none, not both")
        return self


def _answer(view: JobView, created: bool) -> tuple[dict[str, Any], int, dict[str, str]]:
    return view.model_dump(mode="json"), 202 if created else 200, {"Location": view.url}


@study_jobs.post("/<int:study_id>/evaluate", responses={200: JobView, 202: JobView})
def evaluate(path: StudyPath, body: EvaluationRequest) -> tuple[dict[str, Any], int, Any]:
    """Score the test split (the vault) for one model, once: 202 with a new job, 200 with the
    one there is; ``vault_opened`` counts the models scored or being scored."""
    body = strictly(body)
    view, created = tuner().jobs.evaluate(
        path.study_id, body.trial_id, body.ensemble_k, current_tenant()
    )
    return _answer(view, created)


@study_jobs.post("/<int:study_id>/ensemble", responses={200: JobView, 202: JobView})
def ensemble(path: StudyPath, body: EnsembleRequest) -> tuple[dict[str, Any], int, Any]:
    """Average the top-k trials' predicted probabilities; the job scores them on validation."""
    view, created = tuner().jobs.ensemble(path.study_id, strictly(body).k, current_tenant())
    return _answer(view, created)


@study_jobs.get("/<int:study_id>/jobs", responses={200: JobList})
def list_jobs(path: StudyPath) -> dict[str, Any]:
    """Every job of the study: pre-flight, evaluations, ensembles."""
    found = tuner().jobs.jobs(path.study_id, current_tenant())
    return JobList(jobs=found).model_dump(mode="json")


@jobs.get("/<int:job_id>", responses={200: JobView})
def get_job(path: JobPath) -> dict[str, Any]:
    """One job: its state, and its result once done."""
    return tuner().jobs.job(path.job_id, current_tenant()).model_dump(mode="json")


@jobs.post("/<int:job_id>/start", responses={200: JobMessage})
def start_job(path: JobPath) -> dict[str, Any]:
    """A worker starts the job it was sent; 409 once the job has ended (a duplicate message)."""
    return tuner().jobs.start(path.job_id, current_tenant()).model_dump(mode="json")


@jobs.post("/<int:job_id>/result", responses={200: JobView})
def finish_job(path: JobPath, body: JobOutcome) -> dict[str, Any]:
    """The job's outcome; the first one counts, a repeat changes nothing."""
    view = tuner().jobs.finish(path.job_id, body.result, body.reason, current_tenant())
    return view.model_dump(mode="json")
