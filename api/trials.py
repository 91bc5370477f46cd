"""``/trials``: claim, heartbeat, report an epoch's value (answer: prune or not), complete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from flask_openapi3 import APIBlueprint, Tag
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.auth import current_tenant, lease_of_caller
from api.context import tuner
from api.errors import strictly
from api.schemas import ERROR_RESPONSES, TrialPath
from service.dispatch import TrialAssignment
from service.epoch_metrics import MAX_EPOCH_RECORDS, MAX_FIGURES_PER_EPOCH
from service.report_path import ReportAnswer
from service.spec.objectives import MAX_OBJECTIVES, MetricName
from service.trial_outcomes import steps_problem
from service.trial_provenance import TrialProvenance
from service.views import TrialView

trials = APIBlueprint(
    "trials",
    __name__,
    url_prefix="/trials",
    abp_tags=[Tag(name="trials")],
    abp_responses=ERROR_RESPONSES,
    abp_security=[{"bearer": []}],
)

MAX_STEP = 10**9
MAX_BATCH_REPORTS = 200  # epochs in one request of POST /trials/{id}/reports
MAX_REASON_LENGTH = 2000
MAX_METRICS = 64
_STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


LeaseToken = Field(default=None, max_length=64, description="The token the claim returned.")
StatedProvenance = Field(
    default=None,
    description="What the worker states about the trial (as POST /trials/{id}/provenance takes "
    "it), merged into its provenance with this request: a request fewer.",
)


class Report(BaseModel):
    """The validation value after an epoch (``step``), from the trial's lease holder."""

    model_config = ConfigDict(extra="forbid")
    step: int = Field(ge=0, le=MAX_STEP)
    value: float = Field(allow_inf_nan=False)
    lease: str | None = LeaseToken


class EpochValue(BaseModel):
    """One epoch's validation value."""

    model_config = ConfigDict(extra="forbid")
    step: int = Field(ge=0, le=MAX_STEP)
    value: float = Field(allow_inf_nan=False)


class Reports(BaseModel):
    """Several epochs' values at once, steps rising: what a worker sends between decision steps."""

    model_config = ConfigDict(extra="forbid")
    reports: list[EpochValue] = Field(min_length=1, max_length=MAX_BATCH_REPORTS)
    lease: str | None = LeaseToken
    provenance: TrialProvenance | None = StatedProvenance

    @field_validator("reports")
    @classmethod
    def _steps_rise(cls, reports: list[EpochValue]) -> list[EpochValue]:
        problem = steps_problem([report.step for report in reports])
        if problem is not None:
            raise ValueError(problem)
        return reports


class Claim(BaseModel):
    """A worker starting the trial it was sent: who it is (host, process, task)."""

    model_config = ConfigDict(extra="forbid")
    holder: str = Field(min_length=1, max_length=200)


class Lease(BaseModel):
    """The lease a claim grants: report with ``lease`` at least every ``lease_ttl_s`` seconds."""

    lease: str
    lease_ttl_s: float


class Claimed(Lease):
    """A claim's lease, and the first step whose report can prune the trial (``null``: none
    can): reports of earlier steps need not wait for their answers; and the trial to run as the
    service holds it (the queue's message only names it: anyone who can write to the broker
    could have sent it)."""

    next_decision_step: int | None
    assignment: TrialAssignment


class Heartbeat(BaseModel):
    """The holder is alive between reports."""

    model_config = ConfigDict(extra="forbid")
    lease: str | None = LeaseToken


class Decision(BaseModel):
    """Whether the trial must stop now, and when a report can next stop it."""

    prune: bool
    next_decision_step: int | None = Field(
        description="The first later step whose report can prune this trial: reports of earlier "
        "steps may be sent without waiting for their answers (the workers do). null: no later "
        "report can prune it (pruner none), or the trial was pruned. Hyperband answers its next "
        "rung; other pruners the next step."
    )


EpochFigures = Annotated[
    dict[MetricName, Annotated[float, Field(allow_inf_nan=False)] | None],
    Field(max_length=MAX_FIGURES_PER_EPOCH),
]


class Completion(BaseModel):
    """How a trial ended: ``complete`` with its value, ``pruned``, or ``failed`` with a reason."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["complete", "pruned", "failed"] = "complete"
    value: float | None = Field(default=None, allow_inf_nan=False)
    values: list[Annotated[float, Field(allow_inf_nan=False)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_OBJECTIVES,
        description="One value per objective, in order (a study of several objectives).",
    )
    metrics: dict[MetricName, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=dict,
        max_length=MAX_METRICS,
        description="The trial's named results (e.g. n_parameters): objectives and constraints "
        "take theirs from here.",
    )
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)
    lease: str | None = LeaseToken
    epoch_metrics: list[EpochFigures] | None = Field(
        default=None,
        max_length=MAX_EPOCH_RECORDS,
        description="One record per epoch run (e.g. train_loss, validation_loss, grad_norm), "
        "kept on the trial; sent with a completion or a failure, never with a report.",
    )
    reports: list[EpochValue] | None = Field(
        default=None,
        max_length=MAX_BATCH_REPORTS,
        description="A complete trial's epochs' values not reported yet (steps rising, after "
        "the last step reported), recorded with the completion in one transaction as its "
        "intermediate values: what POST /trials/{id}/reports would record, less a request. "
        "They decide nothing (the trial has ended). Only with state complete.",
    )
    provenance: TrialProvenance | None = StatedProvenance


@trials.post("/<int:trial_id>/claim", responses={200: Claimed})
def claim(path: TrialPath, body: Claim) -> dict[str, Any]:
    """Start the trial this worker was sent; 409 if another holder has it (a duplicate message)."""
    claimed = tuner().claim(path.trial_id, body.holder, current_tenant())
    return Claimed(
        lease=claimed.lease,
        lease_ttl_s=tuner().lease_ttl_s,
        next_decision_step=claimed.next_decision_step,
        assignment=claimed.assignment,
    ).model_dump(mode="json")


class Renewed(BaseModel):
    """The lease renewed: send the next report or heartbeat within ``lease_ttl_s`` seconds."""

    lease: str | None = Field(
        description="the lease renewed, as sent; null where none was sent (a trial your own "
        "program asked for may be written to without its lease, with the token that asked)"
    )
    lease_ttl_s: float


@trials.post("/<int:trial_id>/heartbeat", responses={200: Renewed})
def heartbeat(path: TrialPath, body: Heartbeat) -> dict[str, Any]:
    """Renew the lease while an epoch runs long; 409 if the lease was taken away."""
    tuner().heartbeat(path.trial_id, lease_of_caller(body.lease), current_tenant())
    return Renewed(lease=body.lease, lease_ttl_s=tuner().lease_ttl_s).model_dump()


@trials.post("/<int:trial_id>/report", responses={200: Decision})
def report(path: TrialPath, body: Report) -> dict[str, Any]:
    """Record the value after an epoch (renewing the lease); the answer says whether to prune."""
    body = strictly(body, strings_as_numbers=False)
    answer = tuner().report_answer(
        path.trial_id, body.step, body.value, lease_of_caller(body.lease), current_tenant()
    )
    return _decision(answer)


@trials.post("/<int:trial_id>/reports", responses={200: Decision})
def report_many(path: TrialPath, body: Reports) -> dict[str, Any]:
    """Record several epochs' values in order, each as its own report; the answer is the last
    one's. A value that prunes the trial ends it there: later ones are not recorded."""
    body = strictly(body, strings_as_numbers=False)
    answer = tuner().report_many(
        path.trial_id,
        [(report.step, report.value) for report in body.reports],
        lease_of_caller(body.lease),
        current_tenant(),
        body.provenance,
    )
    return _decision(answer)


def _decision(answer: ReportAnswer) -> dict[str, Any]:
    """A report's answer; a pruned trial has no next step to decide at."""
    upcoming = None if answer.prune else answer.next_decision_step
    return Decision(prune=answer.prune, next_decision_step=upcoming).model_dump()


@trials.post("/<int:trial_id>/complete", responses={200: TrialView})
def complete(path: TrialPath, body: Completion) -> dict[str, Any]:
    """Finish the trial. Repeating the same completion is harmless."""
    body = strictly(body, strings_as_numbers=False)
    state = _STATES[body.state]
    view = tuner().complete(
        path.trial_id,
        state,
        body.value,
        body.reason,
        lease_of_caller(body.lease),
        current_tenant(),
        values=body.values,
        figures=body.metrics,
        epoch_metrics=body.epoch_metrics,
        last_reports=[(report.step, report.value) for report in body.reports or []],
        provenance=body.provenance,
    )
    return view.model_dump(mode="json")
