"""``/studies``: submit, list, read, stop; and ask for a trial (for programs training their own models)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import current_tenant
from api.context import tuner
from api.errors import no_content, strictly
from api.schemas import ERROR_RESPONSES, SchemaMadeOnce, StudyPath
from service.dispatch import TrialAssignment
from service.spec.study_spec import MAX_TRIALS, StudySpec
from service.tokens import DEFAULT_TENANT
from service.views import BestView, ParetoView, StudyView, TrialView

studies = APIBlueprint(
    "studies",
    __name__,
    url_prefix="/studies",
    abp_tags=[Tag(name="studies")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)


class StudyList(BaseModel):
    studies: list[StudyView]


class TrialList(BaseModel):
    trials: list[TrialView]


@studies.post("", responses={201: StudyView})
def create_study(body: StudySpec) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Submit a study; its first trials are dispatched at once."""
    view = tuner().create_study(strictly(body), current_tenant() or DEFAULT_TENANT)
    return view.model_dump(mode="json"), 201, {"Location": view.urls["self"]}


@studies.get("", responses={200: StudyList})
def list_studies() -> dict[str, Any]:
    """Every study, newest first."""
    return StudyList(studies=tuner().studies(current_tenant())).model_dump(mode="json")


@studies.get("/<int:study_id>", responses={200: StudyView})
def get_study(path: StudyPath) -> dict[str, Any]:
    """A study's state, its trials counted by state, and its best so far."""
    return tuner().study(path.study_id, current_tenant()).model_dump(mode="json")


@studies.get("/<int:study_id>/trials", responses={200: TrialList})
def list_trials(path: StudyPath) -> dict[str, Any]:
    """Every trial: parameters, state, value and intermediate values."""
    return TrialList(trials=tuner().study_trials(path.study_id, current_tenant())).model_dump(
        mode="json"
    )


@studies.get("/<int:study_id>/best", responses={200: BestView})
def get_best(path: StudyPath) -> Response:
    """The best complete trial's parameters and value. Its ``ETag`` is a hash of the answer:
    ``If-None-Match`` with it gets 304 while the best is unchanged."""
    response = jsonify(tuner().best(path.study_id, current_tenant()).model_dump(mode="json"))
    response.add_etag()
    response.cache_control.no_cache = True  # a cache must ask again: the best moves
    response.make_conditional(_conditional_environ())
    return response


def _conditional_environ() -> dict[str, Any]:
    """The request's environment for Werkzeug's conditional answer (304 where ``If-None-Match``
    holds the ETag, 412 where ``If-Match`` does not), with ``If-Match: *`` taken out: ``*`` matches
    any current answer (RFC 9110 13.1.1), which Werkzeug's strong comparison does not see."""
    environ: dict[str, Any] = request.environ
    if request.if_match.star_tag:
        return {key: value for key, value in environ.items() if key != "HTTP_IF_MATCH"}
    return environ


@studies.get("/<int:study_id>/pareto", responses={200: ParetoView})
def get_pareto(path: StudyPath) -> dict[str, Any]:
    """The Pareto front: the feasible complete trials no other trial beats on every objective."""
    return tuner().pareto(path.study_id, current_tenant()).model_dump(mode="json")


@studies.post("/<int:study_id>/stop", responses={200: StudyView})
def stop_study(path: StudyPath) -> dict[str, Any]:
    """Start no new trial; running ones finish."""
    return tuner().stop(path.study_id, current_tenant()).model_dump(mode="json")


class BudgetExtension(BaseModel):
    """The new budget of trials, in all (more than the current one)."""

    model_config = ConfigDict(extra="forbid")
    n_trials: int = Field(ge=1, le=MAX_TRIALS)


@studies.post("/<int:study_id>/budget", responses={200: StudyView})
def extend_budget(path: StudyPath, body: BudgetExtension) -> dict[str, Any]:
    """Raise the study's budget; a completed study runs again."""
    view = tuner().extend(path.study_id, strictly(body).n_trials, current_tenant())
    return view.model_dump(mode="json")


@studies.post("/<int:study_id>/pause", responses={200: StudyView})
def pause_study(path: StudyPath) -> dict[str, Any]:
    """Start no new trial until resumed; running ones finish."""
    return tuner().pause(path.study_id, current_tenant()).model_dump(mode="json")


@studies.post("/<int:study_id>/resume", responses={200: StudyView})
def resume_study(path: StudyPath) -> dict[str, Any]:
    """Start trials again where the budget allows."""
    return tuner().resume(path.study_id, current_tenant()).model_dump(mode="json")


@studies.delete("/<int:study_id>", responses={204: None})
def delete_study(path: StudyPath) -> Response:
    """Delete the study and its trials."""
    tuner().delete(path.study_id, current_tenant())
    return no_content()


IDEMPOTENCY_KEY = "Idempotency-Key"


class AskHeaders(SchemaMadeOnce):
    """An ask's ``Idempotency-Key``: a repeat of the ask with the same key, while the trial it
    started holds its lease, is answered with that trial (its parameters and lease) instead of
    starting another; once the trial has ended, the key starts a new one."""

    idempotency_key: str | None = Field(
        default=None,
        alias=IDEMPOTENCY_KEY,
        min_length=1,
        max_length=200,
        description="1 to 200 visible ASCII characters, e.g. a UUID the program makes per ask",
    )

    @field_validator("idempotency_key")
    @classmethod
    def _visible_ascii(cls, key: str | None) -> str | None:
        if key is not None and not all("!" <= character <= "~" for character in key):
            raise ValueError("must be visible ASCII characters only (no spaces)")
        return key


class AskedTrial(TrialAssignment):
    """The trial started for the asker: its parameters, and the lease its reports carry."""

    lease_ttl_s: float = Field(
        description="seconds the lease lasts: report, or send a heartbeat, at least this often"
    )


@studies.post("/<int:study_id>/trials", responses={201: AskedTrial})
def ask_trial(path: StudyPath, header: AskHeaders) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Start a trial and get its parameters (ask), for a program that trains its own model. The
    answer names the ``Idempotency-Key`` it kept (a client learns that this API keeps them)."""
    key = header.idempotency_key
    asked = tuner().ask(path.study_id, current_tenant(), key)
    answer = AskedTrial(**asked.model_dump(), lease_ttl_s=tuner().lease_ttl_s)
    return answer.model_dump(mode="json"), 201, ({IDEMPOTENCY_KEY: key} if key else {})
