"""``/studies/{id}/plots/{kind}.png`` and ``/studies/{id}/importance``: a study's figures and
parameter importances, drawn by ``service/insights.py`` from the service's Optuna storage."""

from __future__ import annotations

from typing import Any, Literal

from flask import Response
from flask_openapi3 import APIBlueprint, Tag

from api.auth import current_tenant
from api.context import tuner
from api.schemas import ERROR_RESPONSES, StudyPath
from service.insights import ImportanceView, importances, plot_png

insights = APIBlueprint(
    "insights",
    __name__,
    url_prefix="/studies",
    abp_tags=[Tag(name="insights")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)


class PlotPath(StudyPath):
    kind: Literal["history", "intermediate", "importance", "parallel_coordinate"]


@insights.get("/<int:study_id>/plots/<kind>.png", responses={200: None})
def get_plot(path: PlotPath) -> Response:
    """A PNG figure of the study: optimisation ``history``, ``intermediate`` values (the pruning
    picture), parameter ``importance`` or ``parallel_coordinate``; 409 until it has the trials
    the figure needs."""
    study = tuner().optuna_study(path.study_id, current_tenant())
    response = Response(plot_png(study, path.study_id, path.kind), mimetype="image/png")
    response.cache_control.no_cache = True  # the figure changes as trials finish
    return response


@insights.get("/<int:study_id>/importance", responses={200: ImportanceView})
def get_importance(path: StudyPath) -> dict[str, Any]:
    """Parameter importances of the complete trials (Optuna's default evaluator, PED-ANOVA);
    409 with fewer than two complete trials."""
    study = tuner().optuna_study(path.study_id, current_tenant())
    return importances(study, path.study_id).model_dump(mode="json")
