"""A trial's reports go out in the background until a step whose answer can prune the trial."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from client import TrialGone
from workers.report_pipeline import MAX_IN_FLIGHT, ReportPipeline


class Service:
    """Answers reports as the service does: a decision step every ``every`` steps (``None``:
    never), pruning at ``prune_at``. Each report waits until ``release`` is set."""

    def __init__(self, every: int | None, prune_at: int | None = None) -> None:
        self.every = every
        self.prune_at = prune_at
        self.received: list[tuple[int, str]] = []
        self.release = threading.Event()
        self.release.set()
        self.fail_at: int | None = None
        self.slow_after_failure_s = 0.0

    def send(self, step: int, value: float) -> dict[str, Any]:
        self.release.wait(timeout=10)
        if self.fail_at is not None and step > self.fail_at:
            time.sleep(self.slow_after_failure_s)
        self.received.append((step, threading.current_thread().name))
        if step == self.fail_at:
            raise TrialGone(409, {"error": "trial 1 is failed, not running"})
        next_step = None if self.every is None else (step // self.every + 1) * self.every
        return {"prune": step == self.prune_at, "next_decision_step": next_step}


def test_reports_before_the_next_decision_step_do_not_wait() -> None:
    service = Service(every=4)
    pipeline = ReportPipeline(service.send)
    assert pipeline.report(1, 0.9) is False  # the first waits: nothing is known yet
    service.release.clear()  # the service is slow from now on
    assert [pipeline.report(step, 0.5) for step in (2, 3)] == [False, False]  # not blocked
    service.release.set()
    assert pipeline.report(4, 0.4) is False  # a decision step: waits for 2, 3, then itself
    assert [step for step, _ in service.received] == [1, 2, 3, 4]  # in order
    senders = dict(service.received)
    assert senders[1] == senders[4] == threading.current_thread().name
    assert senders[2] != threading.current_thread().name
    pipeline.close()


def test_a_prune_at_a_decision_step_stops_the_trial_there() -> None:
    service = Service(every=3, prune_at=6)
    pipeline = ReportPipeline(service.send)
    answers = [pipeline.report(step, 0.5) for step in range(1, 7)]
    assert answers == [False] * 5 + [True]
    pipeline.close()


def test_without_a_pruner_every_report_but_the_first_goes_in_the_background() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send)
    for step in range(1, 6):
        assert pipeline.report(step, 0.5) is False
    assert pipeline.flush() is False
    assert [step for step, _ in service.received] == [1, 2, 3, 4, 5]
    assert len({name for _, name in service.received[1:]}) == 1
    assert all(name.startswith("reports") for _, name in service.received[1:])
    pipeline.close()


def test_an_older_service_without_next_steps_gets_every_report_waited_for() -> None:
    received: list[str] = []

    def send(step: int, value: float) -> dict[str, Any]:
        received.append(threading.current_thread().name)
        return {"prune": False}

    pipeline = ReportPipeline(send)
    for step in range(1, 4):
        pipeline.report(step, 0.5)
    assert received == [threading.current_thread().name] * 3
    pipeline.close()


def test_an_error_in_a_background_report_reaches_the_trial() -> None:
    service = Service(every=None)
    service.fail_at = 3
    pipeline = ReportPipeline(service.send)
    with pytest.raises(TrialGone):  # raised by a later report, or at the latest by the flush
        for step in range(1, 6):
            pipeline.report(step, 0.5)
        pipeline.flush()
    pipeline.close()


def test_a_failed_report_leaves_no_later_report_behind_the_flush() -> None:
    service = Service(every=None)
    service.fail_at = 3
    service.slow_after_failure_s = 0.2
    pipeline = ReportPipeline(service.send)
    pipeline.report(1, 0.5)  # waits: the first answer names no decision step
    service.release.clear()  # 2 to 5 queue up behind a slow service
    for step in range(2, 6):
        assert pipeline.report(step, 0.5) is False
    service.release.set()
    with pytest.raises(TrialGone):
        pipeline.flush()
    # Every report was out before the flush raised: a completion sent now overtakes none.
    assert [step for step, _ in service.received] == [1, 2, 3, 4, 5]
    assert pipeline.flush() is False
    pipeline.close()


def test_a_slow_service_holds_the_trainer_back_after_a_bounded_queue() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send)
    pipeline.report(1, 0.5)
    service.release.clear()
    last = MAX_IN_FLIGHT + 2  # one report is being sent, MAX_IN_FLIGHT wait behind it

    def train() -> None:
        for step in range(2, last + 2):
            pipeline.report(step, 0.5)

    trainer = threading.Thread(target=train)
    trainer.start()
    trainer.join(timeout=0.3)
    assert trainer.is_alive()  # held back: the queue is full
    service.release.set()
    trainer.join(timeout=10)
    assert not trainer.is_alive()
    pipeline.flush()
    assert [step for step, _ in service.received] == list(range(1, last + 2))
    pipeline.close()
