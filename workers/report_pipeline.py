"""A trial's reports, sent without waiting where the answer cannot stop the trial, and together.

The claim names the first step whose report can prune the trial, and each report's answer the
next (Hyperband: the next rung; no pruner: none). Reports of earlier steps go out in the
background while the next epochs train: at once when the sender is free and its last request is
at least ``min_interval_s`` old; otherwise held, and sent together in one request
(``POST /trials/{id}/reports``) with the next report that finds it so, or once ``batch_size``
are held or ``max_hold_s`` has passed since the last request. So epochs longer than the interval
(most training) send each report as it comes, and epochs of a few milliseconds a few larger
requests per second instead of one per epoch: each request costs the worker's CPU and the
service's, which a small model's training shares on a small machine (``bench.worker_overhead``).
The report at a decision step waits for what is out, then goes with the held ones in one
request, and waits for its answer. Under Hyperband a trial waits only on the reports at its
bracket's rungs; without a pruner, on none.

Other records of the trial that nothing waits for (its provenance) go out on the same sender
(``send_aside``), so the trainer does not wait for them either.

``flush`` sends what is held, waits for what is being sent and raises the first error a
background call met (``TrialGone``: the trial was taken away); the runner flushes before it
completes the trial, so a completion never overtakes a report or a record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

# Sends reports (step, value), steps rising; the service's answer to the last: ``prune``,
# ``next_decision_step``.
ReportSender = Callable[[list[tuple[int, float]]], dict[str, Any]]
UNKNOWN = -1  # no step named yet (an older service's claim): every report waits
# At most this many requests are out at once: a slow service holds the trainer back instead of
# letting reports pile up, and a trial taken away is noticed soon.
MAX_IN_FLIGHT = 8
BATCH_SIZE = 32  # reports held at most before they go out together
MAX_HOLD_S = 1.0  # and for at most this long after the last request
MIN_INTERVAL_S = 0.2  # a free sender waits this long after its last request before the next


class ReportPipeline:
    """Reports of one trial: held and sent together in the background until a step whose answer
    can prune it."""

    def __init__(
        self,
        send: ReportSender,
        batch_size: int = BATCH_SIZE,
        max_hold_s: float = MAX_HOLD_S,
        min_interval_s: float = MIN_INTERVAL_S,
        first_decision_step: int | None = UNKNOWN,
    ) -> None:
        """``first_decision_step``: as the claim named it (``UNKNOWN``: the first report waits
        for its answer)."""
        self._send = send
        self._batch_size = batch_size
        self._max_hold_s = max_hold_s
        self._min_interval_s = min_interval_s
        self._next_decision: int | None = first_decision_step
        self._held: list[tuple[int, float]] = []
        self._in_flight: list[Future[dict[str, Any]]] = []
        self._aside: list[Future[Any]] = []
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports")
        self._last_request = time.monotonic()
        self._pruned = False

    def report(self, step: int, value: float) -> bool:
        """Send the epoch's value; ``True``: the trial is pruned, stop training it."""
        self._collect_finished()
        if self._pruned:
            return True
        if self._can_wait(step):
            self._held.append((step, value))
            if self._sender_ready() or len(self._held) >= self._batch_size or self._held_too_long():
                self._send_held()
            return self._pruned
        batch, self._held = [*self._held, (step, value)], []
        self._wait_sent()
        self._last_request = time.monotonic()
        return self._take(self._send(batch))

    def send_aside(self, call: Callable[[], Any]) -> None:
        """Make a call whose answer nothing waits for, in the background; :meth:`flush` waits
        for it and raises its error."""
        self._aside.append(self._sender.submit(call))

    def flush(self) -> bool:
        """Send the held reports, wait for every request and call still out; whether a report
        pruned the trial. Raises the first error one of them met, once all of them are out."""
        self._send_held(bounded=False)  # no waiting on one request before all are sent
        return self._wait_sent()

    def close(self) -> None:
        """Stop the sending thread (after a flush, nothing is left to send)."""
        self._sender.shutdown(wait=True, cancel_futures=True)

    def _wait_sent(self) -> bool:
        waiting, self._in_flight = self._in_flight, []
        aside, self._aside = self._aside, []
        wait([*waiting, *aside])  # all of them are out, even where one failed: nothing overtakes
        for sent in waiting:
            self._take(sent.result())
        for call in aside:
            call.result()
        return self._pruned

    def _send_held(self, bounded: bool = True) -> None:
        if not self._held:
            return
        while bounded and len(self._in_flight) >= MAX_IN_FLIGHT:
            self._take_oldest()
        batch, self._held = self._held, []
        self._in_flight.append(self._sender.submit(self._send, batch))
        self._last_request = time.monotonic()

    def _sender_ready(self) -> bool:
        idle = not self._in_flight and all(call.done() for call in self._aside)
        return idle and self._since_last_request() >= self._min_interval_s

    def _held_too_long(self) -> bool:
        return self._since_last_request() >= self._max_hold_s

    def _since_last_request(self) -> float:
        return time.monotonic() - self._last_request

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
