"""A trial's reports, sent without waiting where the answer cannot stop the trial, and together.

The claim names the first step whose report can prune the trial, and each report's answer the
next (Hyperband: the next rung; no pruner: none). Reports of earlier steps are held, and a send
in the background takes every report held when it runs: at once if the last request is at least
``min_interval_s`` old, else when it is. So epochs longer than the interval (most training) send
each report as it comes, and epochs of a few milliseconds a few larger requests per second
instead of one per epoch (each request costs the worker's CPU and the service's, which a small
model's training shares on a small machine: ``bench.worker_overhead``); and no report waits for
a later epoch to end before it goes. A batch goes in requests of at most ``batch_size``
(``POST /trials/{id}/reports``, one transaction each). The report at a decision step takes the
held ones with it in one request, after what is out, and waits for its answer. Under Hyperband
a trial waits only on the reports at its bracket's rungs; without a pruner, on none.

What the worker states about the trial (its provenance: ``state``) goes with the next request
of reports, merged (``provenance`` of ``POST /trials/{id}/reports``): the report at a decision
step, or a background send; or with the completion. It costs no request of its own (on the
2-core machine two provenance requests a trial cost the real-Celery benchmark about a quarter of
its trials/s), and is recorded with the trial's first epoch. Fields a refused request carried
are kept, unsent: ``take_statement`` hands them to a failed trial's completion.

Every report is a plain ``int`` step and ``float`` value before it is held (a trainer's NumPy or
PyTorch scalars too: the client's JSON takes neither). A value that is not finite is never sent
(the API refuses it, and the client's JSON before it): the report answers "stop" and ``failure``
says why, and the trial runner fails the trial with that reason.

A heartbeat that finds the trial taken away says so (``taken_away``): the next report raises
its ``TrialGone`` without sending anything.

``flush`` sends what is held, waits for what is being sent and raises the first error a
background call met (``TrialGone``: the trial was taken away). At a trial's end ``hand_over``
waits the same way but hands back what is held, unsent: the completion brings those reports
(``POST /trials/{id}/complete``'s ``reports``) and the provenance not yet sent, one request
instead of a flush and a completion. Either way a completion never overtakes a report or a
record.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, NamedTuple

from workers.result_figures import as_float, as_step, not_finite_reason

# Sends reports (step, value), steps rising, with what the worker states about the trial (its
# provenance fields; None: nothing new); the service's answer to the last: ``prune``,
# ``next_decision_step``.
ReportSender = Callable[[list[tuple[int, float]], dict[str, Any] | None], dict[str, Any]]
Answer = dict[str, Any] | None  # a background send that found nothing held answers None
UNKNOWN = -1  # no step named yet (an older service's claim): every report waits
BATCH_SIZE = 32  # reports per request at most
MIN_INTERVAL_S = 0.2  # a background send waits this long after the last request
# Held reports past this many (a service slower than the epochs) hold the trainer back until
# they are out, so that a trial taken away is noticed soon.
MAX_HELD = 8 * BATCH_SIZE


class HandedOver(NamedTuple):
    """What a trial's completion brings: the reports held, and the provenance fields not sent."""

    reports: list[tuple[int, float]]
    provenance: dict[str, Any]


class ReportPipeline:
    """Reports of one trial: held and sent together in the background until a step whose answer
    can prune it."""

    def __init__(
        self,
        send: ReportSender,
        batch_size: int = BATCH_SIZE,
        min_interval_s: float = MIN_INTERVAL_S,
        first_decision_step: int | None = UNKNOWN,
    ) -> None:
        """``first_decision_step``: as the claim named it (``UNKNOWN``: the first report waits
        for its answer)."""
        self._send = send
        self._batch_size = batch_size
        self._min_interval_s = min_interval_s
        self._next_decision: int | None = first_decision_step
        self._guard = threading.Lock()  # the held reports, between the trainer and the sender
        self._held: list[tuple[int, float]] = []
        self._stated: dict[str, Any] = {}  # provenance fields not sent yet
        self._scheduled = False  # a background send is queued that has not taken them yet
        self._now = threading.Event()  # the background send goes without waiting its interval
        self._in_flight: list[Future[Answer]] = []
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reports")
        self._last_request = time.monotonic()
        self._pruned = False
        self._refused = False
        self._highest: int | None = None  # the highest step held or sent
        self._gone: Exception | None = None  # why the trial is no longer the worker's
        # Why the trial cannot go on: a report's value that is not a finite number.
        self.failure: str | None = None

    def report(self, step: int, value: float) -> bool:
        """Send the epoch's value; ``True``: the trial is pruned, stop training it. A value that
        is not a finite number is not sent: it answers ``True`` too, and ``failure`` says why
        (the trial ends failed). Once the trial was taken away (:meth:`taken_away`), it raises
        that, sending nothing."""
        if self._gone is not None:
            raise self._gone
        step, value = as_step(step), as_float(value, "a report's value")
        self._collect_finished()
        if self.failure is None:
            self.failure = not_finite_reason(
                value, f"the validation value reported at epoch {step}"
            )
        if self._pruned or self.failure is not None:
            return True
        if self._highest is not None and step <= self._highest:
            return self._send_out_of_order(step, value)
        self._highest = step
        if self._can_wait(step):
            if self._hold(step, value) > MAX_HELD:
                self._wait_sent()
            return self._pruned
        held, stated = self._take_held()
        return self._take(self._send_in_order([*held, (step, value)], stated))

    def _send_out_of_order(self, step: int, value: float) -> bool:
        """A step reported again, or below one reported (a trainer of one's own may): the
        reports held go first, then it in a request of its own, answered before training goes
        on. A request's steps rise, and a completion brings only steps after every one
        reported: held with the others it would have them refused, and the trial failed."""
        held, stated = self._take_held()
        if held:
            self._take(self._send_in_order(held, stated))
            stated = self.take_statement()
        return self._take(self._send_in_order([(step, value)], stated))

    def taken_away(self, gone: Exception) -> None:
        """The trial is no longer the worker's (``gone``: the ``TrialGone`` its heartbeat met,
        from another thread): the next report raises it, so that the trainer stops there
        rather than at the refusal of a report sent later."""
        self._gone = gone

    def state(self, fields: dict[str, Any]) -> None:
        """State provenance ``fields`` of the trial (merged with those not sent yet): they go
        with the next request of reports, or with the completion (:meth:`hand_over`)."""
        with self._guard:
            self._stated.update(fields)

    def take_statement(self) -> dict[str, Any]:
        """The provenance fields stated and not sent (none sent since: a failed trial's
        completion brings them)."""
        with self._guard:
            stated, self._stated = self._stated, {}
        return stated

    def flush(self) -> bool:
        """Send the held reports, wait for every request and call still out; whether a report
        pruned the trial. Raises the first error one of them met, once all of them are out."""
        return self._wait_sent()

    def hand_over(self) -> HandedOver:
        """At the trial's end: wait for every request and call still out (raising the first
        error one met, as :meth:`flush` does) and hand back the reports still held, unsent, and
        the provenance fields not sent, for the trial's completion to bring (one request for
        all); no reports after a prune. Past ``batch_size`` held, the earlier ones are sent
        first, as reports, with the provenance."""
        held, stated = self._take_held()
        earlier, last = held[: -self._batch_size], held[-self._batch_size :]
        if earlier:
            self._take(self._send_in_order(earlier, stated))
            stated = self.take_statement()  # those the sends did not take
        return HandedOver([] if self._pruned else last, stated)

    @property
    def pruned(self) -> bool:
        """Whether a report's answer pruned the trial (as far as the answers in are concerned)."""
        return self._pruned

    def close(self) -> None:
        """Stop the sending thread (after a flush, nothing is left to send)."""
        self._sender.shutdown(wait=True, cancel_futures=True)

    def _hold(self, step: int, value: float) -> int:
        """Hold the report, with a background send queued to take it; how many are held."""
        with self._guard:
            self._held.append((step, value))
            if not self._scheduled:
                self._scheduled = True
                # In the trial's log context: the send's lines name the study and the trial.
                send = contextvars.copy_context().run
                self._in_flight.append(self._sender.submit(send, self._send_held))
            return len(self._held)

    def _take_held(self) -> tuple[list[tuple[int, float]], dict[str, Any]]:
        """Take the reports held and the provenance not sent, then wait for what is out (a
        queued background send then finds nothing); where that raises, the provenance is kept
        for the failed trial's completion."""
        with self._guard:
            held, self._held = self._held, []
            stated, self._stated = self._stated, {}
        try:
            self._wait_sent()
        except Exception:
            self._keep_unsent(stated)
            raise
        return held, stated

    def _send_held(self) -> Answer:
        """On the sender: once the interval since the last request is over (or at once when
        told), send every report held by then, with the provenance stated by then."""
        self._now.wait(self._last_request + self._min_interval_s - time.monotonic())
        with self._guard:
            batch, self._held = self._held, []
            stated, self._stated = (self._stated, {}) if batch else ({}, self._stated)
            self._scheduled = False
        return self._send_in_order(batch, stated) if batch else None

    def _keep_unsent(self, stated: dict[str, Any]) -> None:
        """Put back provenance fields a request did not deliver (those stated since win)."""
        if stated:
            with self._guard:
                self._stated = {**stated, **self._stated}

    def _send_in_order(self, batch: list[tuple[int, float]], stated: dict[str, Any]) -> Answer:
        """Send ``batch`` in requests of at most ``batch_size``, the first bringing ``stated``
        (provenance fields; empty: none; kept when not delivered), stopping at a prune (the
        service records nothing after it) or after a refused request (nothing later may be
        recorded before it); the last answer."""
        answer: Answer = None
        for start in range(0, len(batch), self._batch_size):
            if self._pruned or self._refused:
                break
            self._last_request = time.monotonic()
            try:
                answer = self._send(batch[start : start + self._batch_size], stated or None)
            except Exception:
                self._refused = True  # raised to the trainer by the next report or the flush
                self._keep_unsent(stated)
                raise
            stated = {}
            self._pruned = self._pruned or bool(answer["prune"])
        self._keep_unsent(stated)  # none of the batch went: a prune or a refusal came first
        return answer

    def _wait_sent(self) -> bool:
        self._now.set()  # a queued background send goes now: nothing may wait on its interval
        waiting, self._in_flight = self._in_flight, []
        wait(waiting)  # all of them are out, even where one failed: nothing overtakes
        self._now.clear()
        for sent in waiting:
            self._take(sent.result())
        return self._pruned

    def _can_wait(self, step: int) -> bool:
        if self._next_decision == UNKNOWN:
            return False
        return self._next_decision is None or step < self._next_decision

    def _collect_finished(self) -> None:
        while self._in_flight and self._in_flight[0].done():
            self._take(self._in_flight.pop(0).result())

    def _take(self, answer: Answer) -> bool:
        if answer is None:
            return self._pruned
        self._pruned = self._pruned or bool(answer["prune"])
        # An older service answers no next step: every report waits for its answer.
        self._next_decision = answer.get("next_decision_step", UNKNOWN)
        return self._pruned
