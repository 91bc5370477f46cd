"""What the trial runner sends to one held trial's endpoints: its reports' requests, and how it
ended (complete, pruned, or failed with a reason).

The end of a trial is where a refusal used to strand it: an exception out of the runner is
acknowledged by Celery, and the trial stays running until its lease expires, then runs again
with the same parameters and seed. So a failure the service refuses is sent again with less (the
reason alone, shortened), and nothing raises out of :meth:`TrialEnding.fail` but ``TrialGone``
(the trial is no longer this worker's) and ``ServiceUnreachable`` (the service cannot record
anything now: the lease decides, as it does for a worker lost). A 502, 503 or 504 that the
client's retries did not outlast is ``ServiceUnreachable`` wherever it comes, a report too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from client import HPOError, HPOJSONClient, ServiceUnreachable, TrialGone
from workers.result_figures import epoch_records

logger = logging.getLogger(__name__)
Statement = dict[str, Any] | None  # provenance fields a request brings (None: none)
Answer = TypeVar("Answer")
MAX_REASON_CHARS = 1500
BRIEF_REASON_CHARS = 500  # a failure sent again alone, after the service refused it
OUTAGE_STATUSES = (502, 503, 504)  # the service could not reach its database (client retries)


class TrialEnding:
    """Requests about the trial ``trial_id`` with its ``lease``."""

    def __init__(self, client: HPOJSONClient, trial_id: int, lease: str) -> None:
        self._client = client
        self.trial_id = trial_id
        self.lease = lease
        # The trial's end is being sent: a heartbeat meeting it finds the trial over (409), as
        # expected, not taken away.
        self.ending = False

    def report(self, batch: list[tuple[int, float]], stated: Statement) -> dict[str, Any]:
        """Send reports (step, value) with the provenance ``stated``; the last one's answer. A
        502, 503 or 504 is ``ServiceUnreachable``: not the trainer's failure (the report
        pipeline hands it to the trainer's next report, and the runner lets the lease decide)."""
        return outage_unreachable(
            lambda: self.stating(
                stated,
                lambda given: self._client.report_many(self.trial_id, batch, self.lease, given),
            )
        )

    def report_quietly(self, reports: list[tuple[int, float]]) -> None:
        """Before a failed trial's completion: send its last reports (none: nothing to send)."""
        if reports:
            quietly(lambda: self.report(reports, None), "the failing trial's last reports")

    def pruned(self, stated: Statement) -> None:
        """Confirm the prune (the service pruned it already, with the last reported value); a
        502, 503 or 504 is ``ServiceUnreachable``."""
        self.ending = True
        outage_unreachable(
            lambda: self.stating(
                stated,
                lambda given: self._client.complete(
                    self.trial_id, state="pruned", lease=self.lease, provenance=given
                ),
            )
        )

    def complete(
        self, fields: dict[str, Any], last_reports: list[tuple[int, float]], stated: Statement
    ) -> None:
        """Complete the trial with ``fields`` (its value, metrics and epoch records), bringing
        its last reports and the provenance ``stated`` not sent yet. A 502, 503 or 504 is
        ``ServiceUnreachable``; a service that does not know the reports' field (one from
        before completions brought reports, during a rolling upgrade) gets them as reports
        first; ``last_reports`` is emptied once they are recorded so."""
        self.ending = True
        outage_unreachable(
            lambda: self.stating(stated, lambda given: self._complete(fields, last_reports, given))
        )

    def fail(
        self, reason: str, stated: Statement, epoch_metrics: list[dict[str, Any]] | None = None
    ) -> str:
        """End the trial failed with ``reason``, its epoch records and the provenance ``stated``
        not recorded yet; where the service refuses that, with the reason alone. How it ended:
        ``failed``, or ``unrecorded`` where the service refused that too (the lease ends it)."""
        self.ending = True
        records = epoch_records(epoch_metrics) or None
        try:
            self.stating(
                stated,
                lambda given: self._client.complete(
                    self.trial_id,
                    state="failed",
                    reason=plain_reason(reason, MAX_REASON_CHARS),
                    lease=self.lease,
                    epoch_metrics=records,
                    provenance=given,
                ),
            )
            return "failed"
        except (TrialGone, ServiceUnreachable):
            raise
        except Exception as refused:  # too large, or records the service does not take
            if isinstance(refused, HPOError):
                raise_if_outage(refused)
            logger.warning("trial %s: its failure was refused (%s)", self.trial_id, refused)
            refusal = f"{type(refused).__name__}: {refused}"
        return self._fail_briefly(reason, refusal)

    def stating(self, stated: Statement, call: Callable[[Statement], Answer]) -> Answer:
        """``call`` bringing the provenance ``stated``. A service that does not know the field
        (one from before requests brought provenance, during a rolling upgrade) gets it on its
        own first, then ``call`` without it."""
        if not stated:
            return call(None)
        try:
            return call(stated)
        except HPOError as refused:
            if not names_field(refused, "provenance"):
                raise
        logger.info("trial %s: the service took no provenance with the request", self.trial_id)
        self._client.record_provenance(self.trial_id, stated, self.lease)
        return call(None)

    def _complete(
        self, fields: dict[str, Any], last_reports: list[tuple[int, float]], stated: Statement
    ) -> None:
        sent = {**fields, "lease": self.lease, "provenance": stated}
        try:
            self._client.complete(self.trial_id, **sent, reports=last_reports)
        except HPOError as refused:
            if not last_reports or not names_field(refused, "reports"):
                raise
        else:
            return
        logger.info("trial %s: the service took no reports with the completion", self.trial_id)
        self._client.report_many(self.trial_id, last_reports, self.lease)
        last_reports.clear()  # recorded: a refusal of the completion below sends them no more
        self._client.complete(self.trial_id, **sent)

    def _fail_briefly(self, reason: str, refusal: str) -> str:
        """End the trial failed with ``reason``, shortened, saying why it comes alone."""
        brief = (
            f"{plain_reason(reason, BRIEF_REASON_CHARS)} [sent without epoch records or "
            f"provenance: the failure with them was refused: {plain_reason(refusal, 300)}]"
        )
        try:
            self._client.complete(self.trial_id, state="failed", reason=brief, lease=self.lease)
        except (TrialGone, ServiceUnreachable):
            raise
        except HPOError as refused:
            raise_if_outage(refused)
            logger.error(
                "trial %s: the service refused its failure (%s); its lease will end it",
                self.trial_id,
                refused,
            )
            return "unrecorded"
        return "failed"


def outage_unreachable(call: Callable[[], Answer]) -> Answer:
    """``call``'s answer; a 502, 503 or 504 it met is raised as ``ServiceUnreachable``."""
    try:
        return call()
    except HPOError as refused:
        raise_if_outage(refused)
        raise


def raise_if_outage(refused: HPOError) -> None:
    """A 502, 503 or 504 the client's retries did not outlast is ``ServiceUnreachable``: the
    service cannot record anything now, and the lease decides, as for a service out of reach."""
    if refused.status in OUTAGE_STATUSES:
        raise ServiceUnreachable(refused) from refused


def plain_reason(reason: str, limit: int) -> str:
    """``reason`` cut to ``limit`` characters, with what is not Unicode text (a lone surrogate
    from a file name that is not UTF-8, which the API refuses) written as its escape."""
    return reason.encode("utf-8", errors="backslashreplace").decode("utf-8")[:limit]


def names_field(refused: HPOError, field: str) -> bool:
    """Whether the refusal names ``field`` itself (not one of its parts) among its problems:
    an unknown field is named so, a bad value inside it by its place (``reports.0.value``)."""
    problems = refused.body.get("problems", []) if isinstance(refused.body, dict) else []
    return any(problem.get("field") == field for problem in problems)


def quietly(send: Callable[[], object], what: str) -> None:
    """Send ``what`` before a failed trial's completion. A refusal must not hide the trainer's
    failure (the completion carries it): it is logged; a trial taken away, or a service out of
    reach, ends here."""
    try:
        send()
    except (TrialGone, ServiceUnreachable):
        raise
    except Exception as refused:
        logger.warning("%s: refused (%s)", what, refused)
