"""What the service hands to whoever runs trials: an assignment, and the dispatcher interface."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict


class TrialAssignment(BaseModel):
    """One trial to run: ids, the sampled parameters, the trainer and its settings, a seed.

    Plain JSON: this is the body of the task message, and of the ask endpoint's answer. ``lease``
    is set only in the ask answer (the asker holds the trial at once); a worker claims its own.
    """

    model_config = ConfigDict(frozen=True)

    study_id: int
    trial_id: int
    number: int
    params: dict[str, Any]
    trainer: dict[str, Any] | None
    seed: int
    lease: str | None = None


class TrialDispatcher(Protocol):
    """Sends an assignment to the workers (the API's implementation sends a Celery task)."""

    def dispatch(self, assignment: TrialAssignment) -> None: ...


class QueueReader(Protocol):
    """Reads which trials' messages still wait in the queue (the API's reads the broker)."""

    def queued_trials(self, trial_ids: Collection[int]) -> set[int] | None:
        """Those of ``trial_ids`` whose message waits in the queue; ``None``: cannot tell."""
        ...


class NoDispatcher:
    """For processes that never start trials themselves (studies without a trainer only)."""

    def dispatch(self, assignment: TrialAssignment) -> None:
        raise RuntimeError(f"no dispatcher configured to run trial {assignment.trial_id}")
