"""A dispatcher for an API built in process, where no worker runs the trials it starts."""

from __future__ import annotations

from service.dispatch import TrialAssignment, TrialDispatcher


class DoNothingDispatcher:
    """Accepts every assignment and runs nothing."""

    def dispatch(self, assignment: TrialAssignment) -> None:
        """Drop the assignment."""


class CountingDispatcher:
    """Hands each assignment to ``inner`` (a real dispatcher) and keeps the ids it was given,
    refused or not: how many sends a step of the service tried."""

    def __init__(self, inner: TrialDispatcher) -> None:
        self.inner = inner
        self.tried: list[int] = []

    def dispatch(self, assignment: TrialAssignment) -> None:
        """Count the assignment, then send it (the inner dispatcher's refusal is raised)."""
        self.tried.append(assignment.trial_id)
        self.inner.dispatch(assignment)
