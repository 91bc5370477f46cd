"""``/trials``: report an epoch's value (answer: prune or not), complete, read one trial."""

from __future__ import annotations

from typing import Any, Literal

from flask_openapi3 import APIBlueprint, Tag
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict, Field

from api.context import tuner
from service.views import TrialView

trials = APIBlueprint("trials", __name__, url_prefix="/trials", abp_tags=[Tag(name="trials")])

MAX_STEP = 10**9
MAX_REASON_LENGTH = 2000
_STATES = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}


class TrialPath(BaseModel):
    trial_id: int


class Report(BaseModel):
    """The validation value after an epoch (``step``)."""

    model_config = ConfigDict(extra="forbid")
    step: int = Field(ge=0, le=MAX_STEP)
    value: float = Field(allow_inf_nan=False)


class Decision(BaseModel):
    """Whether the trial must stop now."""

    prune: bool


class Completion(BaseModel):
    """How a trial ended: ``complete`` with its value, ``pruned``, or ``failed`` with a reason."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["complete", "pruned", "failed"] = "complete"
    value: float | None = Field(default=None, allow_inf_nan=False)
    reason: str | None = Field(default=None, max_length=MAX_REASON_LENGTH)


@trials.post("/<int:trial_id>/report", responses={200: Decision})
def report(path: TrialPath, body: Report) -> dict[str, Any]:
    """Record the value after an epoch; the answer says whether to prune."""
    prune = tuner().report(path.trial_id, body.step, body.value)
    return Decision(prune=prune).model_dump()


@trials.post("/<int:trial_id>/complete", responses={200: TrialView})
def complete(path: TrialPath, body: Completion) -> dict[str, Any]:
    """Finish the trial. Repeating the same completion is harmless."""
    view = tuner().complete(path.trial_id, _STATES[body.state], body.value, body.reason)
    return view.model_dump(mode="json")
