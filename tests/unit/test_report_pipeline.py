"""A trial's reports go out in the background, together, until a step whose answer can prune the
trial."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from client import TrialGone
from workers.report_pipeline import MAX_HELD, ReportPipeline


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
        self.requests: list[list[int]] = []
        self.stated: list[tuple[str, dict[str, Any]]] = []  # provenance: how it came, what

    def send(
        self, batch: list[tuple[int, float]], stated: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request: each report in turn, as the service records them; the last answer."""
        self.requests.append([step for step, _ in batch])
        if stated is not None:
            self.stated.append((f"with report {batch[0][0]}", stated))
        answer: dict[str, Any] = {}
        for step, value in batch:
            answer = self.send_one(step, value)
            if answer["prune"]:
                break
        return answer

    def send_one(self, step: int, value: float) -> dict[str, Any]:
        self.release.wait(timeout=10)
        if self.fail_at is not None and step > self.fail_at:
            time.sleep(self.slow_after_failure_s)
        self.received.append((step, threading.current_thread().name))
        if step == self.fail_at:
            raise TrialGone(409, {"error": "trial 1 is failed, not running"})
        next_step = None if self.every is None else (step // self.every + 1) * self.every
        return {"prune": step == self.prune_at, "next_decision_step": next_step}


def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_reports_before_the_next_decision_step_do_not_wait() -> None:
    service = Service(every=4)
    pipeline = ReportPipeline(service.send, batch_size=1, min_interval_s=0)
    assert pipeline.report(1, 0.9) is False  # the first waits: nothing is known yet
    service.release.clear()  # the service is slow from now on
    assert pipeline.report(2, 0.5) is False  # not blocked
    wait_for(lambda: service.requests == [[1], [2]])  # out, and hanging
    assert pipeline.report(3, 0.5) is False  # not blocked either
    service.release.set()
    assert pipeline.report(4, 0.4) is False  # a decision step: waits for 2, 3, then itself
    assert [step for step, _ in service.received] == [1, 2, 3, 4]  # in order
    senders = dict(service.received)
    assert senders[1] == senders[4] == threading.current_thread().name
    assert senders[2] != threading.current_thread().name
    pipeline.close()


def test_a_prune_at_a_decision_step_stops_the_trial_there() -> None:
    service = Service(every=3, prune_at=6)
    pipeline = ReportPipeline(service.send, batch_size=1)
    answers = [pipeline.report(step, 0.5) for step in range(1, 7)]
    assert answers == [False] * 5 + [True]
    pipeline.close()


def test_without_a_pruner_every_report_but_the_first_goes_in_the_background() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, batch_size=1)
    for step in range(1, 6):
        assert pipeline.report(step, 0.5) is False
    assert pipeline.flush() is False
    assert [step for step, _ in service.received] == [1, 2, 3, 4, 5]
    assert len({name for _, name in service.received[1:]}) == 1
    assert all(name.startswith("reports") for _, name in service.received[1:])
    pipeline.close()


def test_an_older_service_without_next_steps_gets_every_report_waited_for() -> None:
    received: list[str] = []

    def send(batch: list[tuple[int, float]], stated: dict[str, Any] | None) -> dict[str, Any]:
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
    pipeline = ReportPipeline(service.send, batch_size=1)
    with pytest.raises(TrialGone):  # raised by a later report, or at the latest by the flush
        for step in range(1, 6):
            pipeline.report(step, 0.5)
        pipeline.flush()
    pipeline.close()


def test_a_failed_report_stops_the_later_ones_and_leaves_none_out_behind_the_flush() -> None:
    service = Service(every=None)
    service.fail_at = 3
    service.slow_after_failure_s = 0.2
    pipeline = ReportPipeline(service.send, batch_size=1, min_interval_s=0)
    pipeline.report(1, 0.5)  # waits: the first answer names no decision step
    service.release.clear()  # 2 to 5 queue up behind a slow service
    for step in range(2, 6):
        assert pipeline.report(step, 0.5) is False
    service.release.set()
    with pytest.raises(TrialGone):
        pipeline.flush()
    # Nothing is left out once the flush raised: a completion sent now overtakes no report.
    sent = [step for step, _ in service.received]
    time.sleep(0.3)
    assert [step for step, _ in service.received] == sent
    assert sent[:3] == [1, 2, 3] and set(sent) <= {1, 2, 3}  # none after the refused one
    assert pipeline.flush() is False
    pipeline.close()


def test_a_slow_service_holds_the_trainer_back_past_a_bound_on_held_reports() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=0)
    pipeline.report(1, 0.5)
    service.release.clear()
    pipeline.report(2, 0.5)
    wait_for(lambda: service.requests == [[1], [2]])  # out, and hanging
    last = MAX_HELD + 3  # one more than the bound is held behind it

    def train() -> None:
        for step in range(3, last + 1):
            pipeline.report(step, 0.5)

    trainer = threading.Thread(target=train)
    trainer.start()
    trainer.join(timeout=0.3)
    assert trainer.is_alive()  # held back: too many reports wait behind the slow service
    service.release.set()
    trainer.join(timeout=10)
    assert not trainer.is_alive()
    pipeline.flush()
    assert [step for step, _ in service.received] == list(range(1, last + 1))
    pipeline.close()


def test_stated_provenance_goes_merged_with_a_report_that_waits_for_its_answer() -> None:
    service = Service(every=4)
    pipeline = ReportPipeline(service.send, batch_size=1)
    pipeline.state({"seed": 3, "trainer": "mlp"})
    pipeline.state({"dataset": "digits"})
    assert pipeline.report(1, 0.9) is False  # no step named yet: it waits, and brings them
    assert service.stated == [("with report 1", {"seed": 3, "trainer": "mlp", "dataset": "digits"})]
    pipeline.report(2, 0.8)
    pipeline.flush()
    assert len(service.stated) == 1  # sent once
    assert pipeline.take_statement() == {}
    pipeline.close()


def test_stated_provenance_waits_for_reports_and_goes_with_their_background_send() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=0.05, first_decision_step=None)
    pipeline.state({"seed": 3})
    time.sleep(0.2)  # a long first epoch: nothing goes for the provenance alone
    assert service.requests == [] and service.stated == []
    pipeline.report(1, 0.9)
    wait_for(lambda: len(service.received) == 1)
    assert service.stated == [("with report 1", {"seed": 3})]
    pipeline.close()


def test_hand_over_hands_back_the_provenance_not_sent_with_the_reports_held() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=60, first_decision_step=None)
    pipeline.state({"seed": 3})
    pipeline.report(1, 0.9)
    pipeline.state({"dataset": "digits"})
    assert pipeline.hand_over() == ([(1, 0.9)], {"seed": 3, "dataset": "digits"})
    assert service.requests == [] and service.stated == []  # the completion brings them all
    pipeline.close()


def test_hand_over_sends_the_provenance_with_the_reports_past_the_batch_size() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(
        service.send, batch_size=2, min_interval_s=60, first_decision_step=None
    )
    pipeline.state({"seed": 3})
    for step in range(1, 5):
        pipeline.report(step, 0.5)
    assert pipeline.hand_over() == ([(3, 0.5), (4, 0.5)], {})
    assert service.requests == [[1, 2]] and service.stated == [("with report 1", {"seed": 3})]
    pipeline.close()


def test_provenance_a_refused_request_carried_is_kept_for_the_failed_completion() -> None:
    service = Service(every=None)
    service.fail_at = 1
    pipeline = ReportPipeline(service.send, batch_size=1)
    pipeline.state({"seed": 3})
    with pytest.raises(TrialGone):
        pipeline.report(1, 0.9)  # the first report waits: refused, with the provenance
    pipeline.state({"dataset": "digits"})
    pipeline.flush()
    assert pipeline.take_statement() == {"seed": 3, "dataset": "digits"}
    assert pipeline.take_statement() == {}
    pipeline.close()


def test_provenance_is_kept_when_hand_over_raises_a_background_error() -> None:
    service = Service(every=None)
    service.fail_at = 1
    pipeline = ReportPipeline(service.send, min_interval_s=0, first_decision_step=None)
    pipeline.report(1, 0.9)  # held, and sent at once in the background: refused
    wait_for(lambda: service.received != [])
    pipeline.state({"seed": 3})
    with pytest.raises(TrialGone):
        pipeline.hand_over()
    assert pipeline.take_statement() == {"seed": 3}  # for the failed trial's completion
    pipeline.close()


def test_provenance_of_a_pruned_trial_is_handed_back_not_sent_after_the_prune() -> None:
    service = Service(every=None, prune_at=1)
    pipeline = ReportPipeline(service.send, batch_size=1, min_interval_s=60)
    assert pipeline.report(1, 0.9) is True
    pipeline.state({"seed": 3})
    assert pipeline.report(2, 0.8) is True
    assert pipeline.hand_over() == ([], {"seed": 3})
    assert service.requests == [[1]]
    pipeline.close()


def test_a_report_goes_out_at_once_when_the_last_request_is_old_enough() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=0)
    pipeline.report(1, 0.5)
    pipeline.report(2, 0.5)
    wait_for(lambda: len(service.received) == 2)
    assert service.requests == [[1], [2]]
    pipeline.close()


def test_reports_of_fast_epochs_go_together_after_the_interval_without_a_next_epoch() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=1.0)
    started = time.monotonic()
    pipeline.report(1, 0.5)  # waits: nothing is known yet
    pipeline.report(2, 0.5)  # the last request is too recent: held
    pipeline.report(3, 0.5)
    time.sleep(0.1)
    assert service.requests == [[1]]
    # No report follows (a long epoch): the held ones go once the interval is over.
    wait_for(lambda: len(service.requests) == 2)
    assert service.requests == [[1], [2, 3]]
    assert time.monotonic() - started >= 1.0
    pipeline.close()


def test_an_epoch_longer_than_the_interval_sends_its_report_at_once() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=0.1)
    pipeline.report(1, 0.5)
    for step in (2, 3):
        time.sleep(0.15)
        pipeline.report(step, 0.5)
        wait_for(lambda sent=step: len(service.received) == sent)
    assert service.requests == [[1], [2], [3]]
    pipeline.close()


def test_a_decision_step_and_a_flush_do_not_wait_out_the_interval() -> None:
    service = Service(every=5)
    pipeline = ReportPipeline(service.send, min_interval_s=60)
    started = time.monotonic()
    pipeline.report(1, 0.5)
    for step in (2, 3, 4):
        pipeline.report(step, 0.5)  # held: the interval is a minute
    assert pipeline.report(5, 0.5) is False  # takes them along, at once
    assert service.requests == [[1], [2, 3, 4, 5]]
    pipeline.report(6, 0.5)
    assert pipeline.flush() is False
    assert service.requests == [[1], [2, 3, 4, 5], [6]]
    assert time.monotonic() - started < 30  # the interval is 60 s
    pipeline.close()


def test_held_reports_go_in_requests_of_at_most_the_batch_size() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, batch_size=3, min_interval_s=60)
    pipeline.report(1, 0.5)
    for step in range(2, 9):
        assert pipeline.report(step, 0.5) is False
    assert pipeline.flush() is False
    assert service.requests == [[1], [2, 3, 4], [5, 6, 7], [8]]
    assert all(name.startswith("reports") for _, name in service.received[1:])
    pipeline.close()


def test_a_first_decision_step_named_at_the_claim_spares_the_first_report_its_wait() -> None:
    service = Service(every=3)
    pipeline = ReportPipeline(service.send, batch_size=1, first_decision_step=3)
    service.release.clear()  # the service is slow: reports before step 3 must not wait
    assert [pipeline.report(step, 0.5) for step in (1, 2)] == [False, False]
    assert service.received == []
    service.release.set()
    assert pipeline.report(3, 0.5) is False  # the decision step waits for 1, 2, then itself
    assert [step for step, _ in service.received] == [1, 2, 3]
    assert service.received[2][1] == threading.current_thread().name
    pipeline.close()


def test_without_a_pruner_named_at_the_claim_no_report_waits() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, batch_size=1, first_decision_step=None)
    service.release.clear()
    assert [pipeline.report(step, 0.5) for step in range(1, 4)] == [False] * 3
    service.release.set()
    assert pipeline.flush() is False
    assert [step for step, _ in service.received] == [1, 2, 3]
    assert all(name.startswith("reports") for _, name in service.received)
    pipeline.close()


def test_a_prune_answered_in_the_background_stops_the_later_requests_and_the_trial() -> None:
    service = Service(every=None, prune_at=3)
    pipeline = ReportPipeline(service.send, batch_size=2, min_interval_s=60)
    pipeline.report(1, 0.5)
    for step in (2, 3, 4):
        pipeline.report(step, 0.5)
    assert pipeline.flush() is True  # [2, 3] pruned at 3: [4] is not sent
    assert service.requests == [[1], [2, 3]]
    assert pipeline.report(5, 0.5) is True
    assert [step for step, _ in service.received] == [1, 2, 3]
    pipeline.close()


def test_hand_over_waits_for_what_is_out_and_hands_back_what_is_held_unsent() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, batch_size=8, min_interval_s=60)
    pipeline.report(1, 0.5)  # the first waits (no step named yet): then none does
    pipeline.report(2, 0.4)  # held behind the interval
    pipeline.report(3, 0.3)
    assert pipeline.hand_over().reports == [(2, 0.4), (3, 0.3)]
    assert service.requests == [[1]] and not pipeline.pruned
    pipeline.close()


def test_hand_over_sends_what_passes_the_batch_size_and_hands_back_the_last_batch() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, batch_size=3, min_interval_s=60)
    for step in range(1, 9):
        pipeline.report(step, 0.5)
    assert pipeline.hand_over().reports == [(6, 0.5), (7, 0.5), (8, 0.5)]
    assert service.requests == [[1], [2, 3, 4], [5]]
    pipeline.close()


def test_hand_over_after_a_prune_hands_back_nothing() -> None:
    service = Service(every=None, prune_at=3)
    pipeline = ReportPipeline(service.send, batch_size=2, min_interval_s=60)
    for step in range(1, 7):
        pipeline.report(step, 0.5)
    assert pipeline.hand_over().reports == []
    assert pipeline.pruned is True
    assert [step for step, _ in service.received] == [1, 2, 3]
    pipeline.close()


def test_hand_over_raises_an_error_a_background_report_met() -> None:
    service = Service(every=None)
    service.fail_at = 2
    pipeline = ReportPipeline(service.send, batch_size=1, min_interval_s=0)
    with pytest.raises(TrialGone):  # raised by a later report, or at the latest here
        for step in range(1, 4):
            pipeline.report(step, 0.5)
        pipeline.hand_over()
    pipeline.close()


def test_a_trial_taken_away_raises_at_its_next_report_sending_nothing() -> None:
    service = Service(every=None)
    pipeline = ReportPipeline(service.send, min_interval_s=0, first_decision_step=None)
    assert pipeline.report(1, 0.9) is False
    pipeline.flush()
    # What the trial's heartbeat met, in its own thread.
    pipeline.taken_away(TrialGone(409, {"error": "trial 1 is failed, not running"}))
    for step in (2, 3):
        with pytest.raises(TrialGone):
            pipeline.report(step, 0.5)
    pipeline.close()
    assert service.requests == [[1]]
