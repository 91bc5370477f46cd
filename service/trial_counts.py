"""Counting a study's trials, and whether another may start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from optuna.trial import FrozenTrial, TrialState

from service.spec.study_spec import StudySpec

RETRIED_BY_ATTR = "hpo:retried_by"
REPLACED_ATTR = "hpo:replaced"  # lost to the service itself: a fresh trial takes its place
COPIED_FROM_ATTR = "hpo:copied_from"  # copied from an earlier study (warm start): no budget


@dataclass(frozen=True)
class TrialCounts:
    """How many trials a study has, in all and by state."""

    total: int
    running: int
    by_state: dict[str, int]

    @classmethod
    def of(cls, trials: list[FrozenTrial]) -> TrialCounts:
        """Counts of ``trials``; a failed run that was retried, or replaced by a fresh trial, is
        counted as ``retried`` only; a trial copied from an earlier study as ``copied`` only.

        ``total`` is what the budget sees: the retried run's retry stands in its place, and
        copied trials are history, not budget.
        """
        by_state: dict[str, int] = {state.name.lower(): 0 for state in TrialState}
        by_state["retried"] = 0
        by_state["copied"] = 0
        for trial in trials:
            by_state[_counted_as(trial)] += 1
        total = len(trials) - by_state["retried"] - by_state["copied"]
        return cls(total=total, running=by_state["running"], by_state=by_state)

    def with_one_started(self) -> TrialCounts:
        """The counts once one new trial runs (none was waiting to be popped)."""
        by_state = {**self.by_state, "running": self.by_state.get("running", 0) + 1}
        return TrialCounts(total=self.total + 1, running=self.running + 1, by_state=by_state)


def _counted_as(trial: FrozenTrial) -> str:
    attrs = trial.system_attrs
    if COPIED_FROM_ATTR in attrs:
        return "copied"
    if RETRIED_BY_ATTR in attrs or REPLACED_ATTR in attrs:
        return "retried"
    return trial.state.name.lower()


def why_no_trial_may_start(
    spec: StudySpec, counts: TrialCounts, created_at: datetime, now: datetime | None = None
) -> str | None:
    """``None`` when a new trial may start now; otherwise the reason it may not."""
    budget = spec.budget
    if counts.total >= budget.n_trials and not counts.by_state.get("waiting", 0):
        return f"all {budget.n_trials} trials of the budget have been started"
    if counts.running >= budget.max_concurrent_trials:
        return f"max_concurrent_trials ({budget.max_concurrent_trials}) trials are running"
    if timed_out(spec, created_at, now):
        return f"the study's timeout of {budget.timeout_seconds} s has passed"
    return None


def is_done(spec: StudySpec, counts: TrialCounts, created_at: datetime) -> bool:
    """Whether the study has nothing running and may start nothing more."""
    # An enqueued (waiting) trial is in the total already, but still to run.
    spent = counts.total >= spec.budget.n_trials and not counts.by_state.get("waiting", 0)
    spent = spent or timed_out(spec, created_at)
    return spent and counts.running == 0


def timed_out(spec: StudySpec, created_at: datetime, now: datetime | None = None) -> bool:
    """Whether the study's optional wall-clock budget has run out."""
    if spec.budget.timeout_seconds is None:
        return False
    start = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
    deadline = start + timedelta(seconds=spec.budget.timeout_seconds)
    return (now or datetime.now(UTC)) >= deadline
