"""A trial's reports, sent without waiting where the answer cannot stop the trial.

Each report's answer names the next step whose report can prune the trial (Hyperband: the next
rung; no pruner: none). Reports of earlier steps go out in the background, in order, while the
next epochs train; the report at a decision step first waits for those, then for its own answer.
Under Hyperband with 27 epochs the trainer waits on 4 reports instead of 27, and on none without
a pruner: the epochs do not pay the round trip to the service.

``flush`` waits for what is still being sent and raises the first error a background report met
(``TrialGone``: the trial was taken away); the runner flushes before it completes the trial, so a
completion never overtakes a report.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

# Sends one report (step, value); the service's answer: ``prune``, ``next_decision_step``.
ReportSender = Callable[[int, float], dict[str, Any]]
UNKNOWN = -1  # before the first answer: every report waits
# At most this many reports are out at once: a slow service holds the trainer back instead of
# letting reports pile up, and a trial taken away is noticed within as many epochs.
MAX_IN_FLIGHT = 8


class ReportPipeline:
    """Reports of one trial: in the background until a step whose answer can prune it."""

    def __init__(self, send: ReportSender) -> None:
        self._send = send
        self._next_decision: int | None = UNKNOWN
        self._in_flight: list[Future[dict[str, Any]]] = []
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports")
        self._pruned = False

    def report(self, step: int, value: float) -> bool:
        """Send the epoch's value; ``True``: the trial is pruned, stop training it."""
        self._collect_finished()
        if self._pruned:
            return True
        if self._can_wait(step):
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                self._take_oldest()
            self._in_flight.append(self._sender.submit(self._send, step, value))
            return self._pruned
        self.flush()
        return self._take(self._send(step, value))

    def flush(self) -> bool:
        """Wait for every report still being sent; whether one of them pruned the trial. Raises
        the first error one of them met."""
        waiting, self._in_flight = self._in_flight, []
        wait(waiting)  # all of them are out, even where one failed: nothing overtakes them
        for sent in waiting:
            self._take(sent.result())
        return self._pruned

    def close(self) -> None:
        """Stop the sending thread (after a flush, nothing is left to send)."""
        self._sender.shutdown(wait=True, cancel_futures=True)

    def _can_wait(self, step: int) -> bool:
        if self._next_decision == UNKNOWN:
            return False
        return self._next_decision is None or step < self._next_decision

    def _collect_finished(self) -> None:
        while self._in_flight and self._in_flight[0].done():
            self._take_oldest()

    def _take_oldest(self) -> None:
        self._take(self._in_flight.pop(0).result())

    def _take(self, answer: dict[str, Any]) -> bool:
        self._pruned = self._pruned or bool(answer["prune"])
        # An older service answers no next step: every report waits for its answer.
        self._next_decision = answer.get("next_decision_step", UNKNOWN)
        return self._pruned
