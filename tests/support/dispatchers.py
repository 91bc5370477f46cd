"""A dispatcher for an API built in process, where no worker runs the trials it starts."""

from __future__ import annotations

from service.dispatch import TrialAssignment


class DoNothingDispatcher:
    """Accepts every assignment and runs nothing."""

    def dispatch(self, assignment: TrialAssignment) -> None:
        """Drop the assignment."""
