"""The trial runner completes a trial only after every report of it reached the service, or
brings the last ones with the completion.

The service is a recording stand-in (its side is tested over HTTP elsewhere); the trainer is a
scripted one, so that the order of reports and completion is the thing under test.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from typing import Any

import pytest
import torch
from celery.exceptions import SoftTimeLimitExceeded

from client import HPOError, ServiceUnreachable, TrialGone
from workers import trial_runner
from workers.checkpoints import keep_best
from workers.report_pipeline import ReportPipeline
from workers.trainers.base import TrainingFailed, TrainResult, TrialRun
from workers.trial_claim import ClaimNotMade, claim_retry_delay_s
from workers.trial_ending import TrialEnding
from workers.trial_runner import TrialRunner

MESSAGE = {
    "study_id": 1,
    "trial_id": 7,
    "number": 0,
    "params": {},
    "trainer": {"name": "mlp"},
    "seed": 3,
}


class RecordingService:
    """Answers as the service does without a pruner (no report can prune); each background report
    takes ``delay_s``; the report of ``refuse_step`` gets a 500."""

    def __init__(self, delay_s: float = 0.05, refuse_step: int | None = None) -> None:
        self.delay_s = delay_s
        self.refuse_step = refuse_step
        self.calls: list[tuple[str, Any]] = []
        self.stated: list[tuple[str, dict[str, Any]]] = []  # provenance: how it came, what
        self._guard = threading.Lock()

    def _note(self, call: str, detail: Any) -> None:
        with self._guard:
            self.calls.append((call, detail))

    def claim(self, trial_id: int, holder: str) -> dict[str, Any]:
        return {"lease": "lease-1", "lease_ttl_s": 60.0}

    def heartbeat(self, trial_id: int, lease: str) -> None:
        return None

    def record_provenance(self, trial_id: int, fields: dict[str, Any], lease: str) -> None:
        self.stated.append(("alone", fields))

    def put_checkpoint(self, trial_id: int, content: bytes, lease: str) -> None:
        self._note("checkpoint", None)

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if provenance:
            self.stated.append((f"with report {reports[0][0]}", provenance))
        for step, _ in reports:
            if step > 1:
                time.sleep(self.delay_s)
            self._note("report", step)
            if step == self.refuse_step:
                raise HPOError(500, {"error": "the database is busy"})
        return {"prune": False, "next_decision_step": None}

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        self._note("complete", fields)
        if fields.get("provenance"):
            self.stated.append(("with the completion", fields["provenance"]))
        return {}


class ScriptedTrainer:
    """Reports ``epochs`` epochs, then returns (saying it stopped the trial on its own where
    ``stops`` is set, as a user's trainer may), or fails with ``failure``."""

    def __init__(self, epochs: int, failure: str | None = None, stops: bool = False) -> None:
        self.epochs = epochs
        self.failure = failure
        self.stops = stops

    def train(self, run: TrialRun, report: Any) -> TrainResult:
        for epoch in range(1, self.epochs + 1):
            report(epoch, 1.0 / epoch)
        if self.failure is not None:
            raise TrainingFailed(self.failure, [{"train_loss": 1.0}])
        return TrainResult(value=1.0 / self.epochs, epochs_run=self.epochs, pruned=self.stops)


def run_trial(
    monkeypatch: pytest.MonkeyPatch, service: RecordingService, trainer: ScriptedTrainer
) -> str:
    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: trainer)
    # Held reports wait for the trial's end, however slow the machine (no interval runs out).
    monkeypatch.setattr(trial_runner, "ReportPipeline", partial(ReportPipeline, min_interval_s=60))
    return TrialRunner(service).run(MESSAGE)  # type: ignore[arg-type]


def reported_steps(service: RecordingService) -> list[int]:
    """Every step the service recorded: sent as reports, or brought by a completion."""
    steps: list[int] = []
    for call, detail in service.calls:
        if call == "report":
            steps.append(detail)
        elif call == "complete":
            steps += [step for step, _ in detail.get("reports") or []]
    return steps


def test_a_complete_trial_is_completed_after_its_reports_bringing_those_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RecordingService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=5)) == "complete"
    assert reported_steps(service) == [1, 2, 3, 4, 5]
    assert service.calls[-1][0] == "complete"
    completion = service.calls[-1][1]
    assert completion["value"] == pytest.approx(0.2)
    # The first report waits for its answer (no step named at this claim), the rest are held
    # and go with the completion: one request where two were.
    assert [step for step, _ in completion["reports"]] == [2, 3, 4, 5]
    assert [call for call, _ in service.calls] == ["report", "complete"]


class RefusingReportsService(RecordingService):
    """Refuses a completion bringing reports, naming ``field``: ``reports`` itself (a service
    from before completions brought them: an unknown field), or a value inside it."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        if fields.get("reports"):
            self._note("refused completion", fields["reports"])
            problem = {"field": self.field, "problem": "not accepted"}
            raise HPOError(422, {"error": "invalid request", "problems": [problem]})
        return super().complete(trial_id, **fields)


def test_an_older_service_gets_the_last_reports_as_reports_then_the_completion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RefusingReportsService("reports")
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=5)) == "complete"
    calls = [call for call, _ in service.calls]
    assert calls == ["report", "refused completion", *["report"] * 4, "complete"]
    assert [step for call, step in service.calls if call == "report"] == [1, 2, 3, 4, 5]
    assert "reports" not in service.calls[-1][1] and "state" not in service.calls[-1][1]


def test_refused_last_reports_fail_the_trial_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RefusingReportsService("reports.0.value")  # held reports the service refuses
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=3)) == "failed"
    completion = service.calls[-1][1]
    assert completion["state"] == "failed" and "refused the trial's result" in completion["reason"]
    # They were tried as reports once more before the failure, and nothing was sent twice.
    assert [call for call, _ in service.calls] == [
        "report",
        "refused completion",
        "report",
        "report",
        "complete",
    ]


def test_a_trial_its_trainer_stops_sends_its_held_reports_before_it_ends_pruned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RecordingService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=4, stops=True)) == "pruned"
    assert [step for call, step in service.calls if call == "report"] == [1, 2, 3, 4]
    assert service.calls[-1] == (
        "complete",
        {"state": "pruned", "lease": "lease-1", "provenance": None},  # it went with report 1
    )


def test_a_failing_trainer_is_completed_with_its_reason_though_a_report_was_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RecordingService(delay_s=0.1, refuse_step=2)
    trainer = ScriptedTrainer(epochs=3, failure="the loss is NaN at epoch 3")
    assert run_trial(monkeypatch, service, trainer) == "failed"
    # Reports 2 and 3 may go in one request: the refusal of 2 drops 3 with it.
    reports = [step for call, step in service.calls if call == "report"]
    assert reports[:2] == [1, 2]
    assert [call for call, _ in service.calls][-1] == "complete"  # after every report sent
    completion = service.calls[-1][1]
    assert completion["state"] == "failed"
    assert completion["reason"] == "the loss is NaN at epoch 3"
    assert completion["epoch_metrics"] == [{"train_loss": 1.0}]


class RefusingService(RecordingService):
    """Refuses a complete trial's result (422: a figure the study needs is missing)."""

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        self._note("complete", fields)
        if fields.get("state", "complete") == "complete":
            raise HPOError(422, {"error": "the study's constraint needs the figure 'size'"})
        return {}


class RecordsTrainer(ScriptedTrainer):
    def train(self, run: TrialRun, report: Any) -> TrainResult:
        result = super().train(run, report)
        records = [{"train_loss": 1.0 / e} for e in range(1, self.epochs + 1)]
        return TrainResult(value=result.value, epochs_run=result.epochs_run, epoch_metrics=records)


def test_a_refused_result_is_completed_as_failed_with_its_epoch_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RefusingService()
    assert run_trial(monkeypatch, service, RecordsTrainer(epochs=2)) == "failed"
    refused, failed = [detail for call, detail in service.calls if call == "complete"]
    assert "state" not in refused  # the result was sent first, with the last report
    assert [step for step, _ in refused["reports"]] == [2]
    assert failed["state"] == "failed" and "refused the trial's result" in failed["reason"]
    assert failed["epoch_metrics"] == [{"train_loss": 1.0}, {"train_loss": 0.5}]
    # The refused completion's report is recorded all the same, before the failure.
    assert [call for call, _ in service.calls][-2:] == ["report", "complete"]
    assert [step for call, step in service.calls if call == "report"] == [1, 2]


STATED = {"seed": 3, "trainer": "mlp"}  # what the runner states at once (the trainer's package too)


def stated_once(service: RecordingService) -> str:
    """How the service got the trial's provenance, which it got once and whole."""
    [(how, fields)] = service.stated
    assert STATED.items() <= fields.items()
    return how


def test_the_provenance_goes_with_the_first_request_not_in_one_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RecordingService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=3)) == "complete"
    # The first report waits for its answer (no step named at this claim): it brings them.
    assert stated_once(service) == "with report 1"
    assert [call for call, _ in service.calls] == ["report", "complete"]


class StepNamingService(RecordingService):
    """A claim that names no decision step: no report waits, all go with the completion."""

    def claim(self, trial_id: int, holder: str) -> dict[str, Any]:
        return {**super().claim(trial_id, holder), "next_decision_step": None}


def test_a_short_trial_without_decisions_brings_its_provenance_with_the_completion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = StepNamingService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=3)) == "complete"
    assert stated_once(service) == "with the completion"
    assert [call for call, _ in service.calls] == ["complete"]
    assert [step for step, _ in service.calls[0][1]["reports"]] == [1, 2, 3]


class ProvenanceUnknownService(RecordingService):
    """A service from before reports and completions brought provenance: the field is unknown."""

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if provenance:
            self._note("refused reports", [step for step, _ in reports])
            problem = {"field": "provenance", "problem": "extra inputs are not permitted"}
            raise HPOError(422, {"error": "invalid request", "problems": [problem]})
        return super().report_many(trial_id, reports, lease)


def test_an_older_service_gets_the_provenance_on_its_own_then_the_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = ProvenanceUnknownService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=3)) == "complete"
    assert stated_once(service) == "alone"
    assert [call for call, _ in service.calls] == ["refused reports", "report", "complete"]
    assert reported_steps(service) == [1, 2, 3]


class NoDecisionRefusingService(StepNamingService, RefusingService):
    """No report waits; the complete trial's result is refused (422)."""


def test_a_refused_result_is_failed_bringing_the_provenance_its_completion_brought(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = NoDecisionRefusingService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=2)) == "failed"
    refused, failed = [detail for call, detail in service.calls if call == "complete"]
    assert STATED.items() <= refused["provenance"].items()  # rolled back with the refusal
    assert failed["state"] == "failed" and STATED.items() <= failed["provenance"].items()


def test_provenance_a_refused_report_carried_goes_with_the_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RecordingService(refuse_step=1)  # the first report waits, and brings it: refused
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=3)) == "failed"
    completion = service.calls[-1][1]
    assert completion["state"] == "failed" and "database is busy" in completion["reason"]
    assert STATED.items() <= completion["provenance"].items()


class OldestService(StepNamingService):
    """A service that knows neither a completion's reports nor any request's provenance."""

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        unknown = [name for name in ("reports", "provenance") if fields.get(name)]
        if unknown:
            self._note("refused completion", unknown)
            problems = [{"field": name, "problem": "extra inputs"} for name in unknown]
            raise HPOError(422, {"error": "invalid request", "problems": problems})
        return super().complete(trial_id, **fields)


def test_the_oldest_service_gets_the_reports_and_the_provenance_before_the_completion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = OldestService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=3)) == "complete"
    assert reported_steps(service) == [1, 2, 3]  # each once
    assert stated_once(service) == "alone"
    assert [call for call, _ in service.calls][-1] == "complete"
    assert service.calls[-1][1]["value"] == pytest.approx(1 / 3)


class CheckpointKeepingTrainer(ScriptedTrainer):
    """Keeps a best checkpoint, as the built-in trainer does, then returns."""

    def train(self, run: TrialRun, report: Any) -> TrainResult:
        keep_best(torch.nn.Linear(2, 2), 0.5)
        return super().train(run, report)


class FailingUploadService(RecordingService):
    """The checkpoint upload fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def put_checkpoint(self, trial_id: int, content: bytes, lease: str) -> None:
        self._note("checkpoint", None)
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        HPOError(503, {"error": "the database is unavailable"}),  # past the client's retries
        HPOError(400, {"error": "not a safetensors file"}),
        ValueError("Expecting value: line 1 column 1 (char 0)"),  # a 2xx that is not JSON
    ],
)
def test_a_checkpoint_that_does_not_upload_leaves_the_trial_to_complete(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    service = FailingUploadService(error)
    assert run_trial(monkeypatch, service, CheckpointKeepingTrainer(epochs=2)) == "complete"
    assert [call for call, _ in service.calls] == ["report", "checkpoint", "complete"]
    assert service.calls[-1][1]["value"] == pytest.approx(0.5)


class BrokenCompletionService(RecordingService):
    """The complete trial's completion fails in the worker with ``error`` (not a refusal)."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        if fields.get("state", "complete") == "complete":
            self._note("broken completion", None)
            raise self.error
        return super().complete(trial_id, **fields)


def test_an_error_in_the_worker_at_the_trials_end_fails_the_trial_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = BrokenCompletionService(RuntimeError("the encoder broke"))
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=2)) == "failed"
    completion = service.calls[-1][1]
    assert completion["state"] == "failed"
    assert completion["reason"].startswith(
        "the worker could not complete the trial: RuntimeError: the encoder broke"
    )


def test_a_completion_the_service_cannot_record_for_an_outage_is_left_to_the_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = BrokenCompletionService(HPOError(503, {"error": "the database is unavailable"}))
    with pytest.raises(ServiceUnreachable):
        run_trial(monkeypatch, service, ScriptedTrainer(epochs=2))
    # Not failed for good: the lease expires and the trial runs again.
    assert [call for call, _ in service.calls] == ["report", "broken completion"]


class RefusingEveryEndService(RecordingService):
    """Refuses every completion (a token that lost its rights, say)."""

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        self._note("refused", fields.get("state", "complete"))
        raise HPOError(403, {"error": "this token may not complete trials"})


def test_a_failure_the_service_refuses_raises_nothing_and_leaves_the_trial_to_its_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RefusingEveryEndService()
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=2)) == "unrecorded"
    # The result, its failure with the records, the failure alone: then the lease decides.
    assert [detail for call, detail in service.calls if call == "refused"] == [
        "complete",
        "failed",
        "failed",
    ]


class UnclaimableService(RecordingService):
    """The claim fails with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def claim(self, trial_id: int, holder: str) -> dict[str, Any]:
        self._note("claim", None)
        raise self.error


@pytest.mark.parametrize(
    ("error", "token_refused"),
    [
        (ServiceUnreachable(ConnectionRefusedError("refused")), False),  # past the retries
        (HPOError(503, {"error": "the database is unavailable"}), False),
        (HPOError(401, {"error": "a valid bearer token is needed"}), True),
        (HPOError(403, {"error": "only a worker token may claim a trial"}), True),
    ],
)
def test_a_claim_that_did_not_happen_leaves_the_trial_unstarted_for_its_message_to_return(
    monkeypatch: pytest.MonkeyPatch, error: Exception, token_refused: bool
) -> None:
    service = UnclaimableService(error)
    with pytest.raises(ClaimNotMade) as not_made:
        run_trial(monkeypatch, service, ScriptedTrainer(epochs=2))
    assert not_made.value.token_refused is token_refused
    assert [call for call, _ in service.calls] == ["claim"]  # nothing trained or completed


def test_a_claim_refused_as_gone_drops_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    service = UnclaimableService(TrialGone(409, {"error": "trial 7 is already held"}))
    assert run_trial(monkeypatch, service, ScriptedTrainer(epochs=2)) == "gone"


def test_a_message_sent_back_waits_longer_each_time_up_to_five_minutes() -> None:
    assert [claim_retry_delay_s(n) for n in range(7)] == [15, 30, 60, 120, 240, 300, 300]
    assert claim_retry_delay_s(10**6) == 300


class OverlongTrainer(ScriptedTrainer):
    """Celery's soft time limit stops it after its epochs (a hung trainer, say)."""

    def train(self, run: TrialRun, report: Any) -> TrainResult:
        super().train(run, report)
        raise SoftTimeLimitExceeded()


def test_a_trial_past_the_soft_time_limit_fails_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    service = RecordingService()
    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: OverlongTrainer(epochs=2))
    monkeypatch.setattr(trial_runner, "ReportPipeline", partial(ReportPipeline, min_interval_s=60))
    assert TrialRunner(service, time_limit_s=21300).run(MESSAGE) == "failed"  # type: ignore[arg-type]
    assert reported_steps(service) == [1, 2]  # its epochs are recorded first
    completion = service.calls[-1][1]
    assert completion["state"] == "failed"
    assert completion["reason"].startswith(
        "the trial ran past the time limit: stopped after 21300 s"
    )


class StickyCudaErrorTrainer(ScriptedTrainer):
    """Fails after its epochs with a CUDA error that leaves the process's GPU unusable."""

    def train(self, run: TrialRun, report: Any) -> TrainResult:
        super().train(run, report)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def run_trial_noting_device(
    monkeypatch: pytest.MonkeyPatch, service: RecordingService, trainer: ScriptedTrainer
) -> tuple[str, list[str]]:
    """How the trial ended, and the calls made in order: the service's and the runner's
    ``on_device_unusable`` (noted as "device unusable")."""
    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: trainer)
    monkeypatch.setattr(trial_runner, "ReportPipeline", partial(ReportPipeline, min_interval_s=60))
    noted = partial(service._note, "device unusable", None)
    outcome = TrialRunner(service, on_device_unusable=noted).run(MESSAGE)  # type: ignore[arg-type]
    return outcome, [call for call, _ in service.calls]


def test_a_sticky_cuda_error_fails_the_trial_and_says_the_device_is_unusable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = RecordingService()
    outcome, calls = run_trial_noting_device(monkeypatch, service, StickyCudaErrorTrainer(2))
    assert outcome == "failed"
    # Said once, before the failure is sent (a service out of reach would not change it).
    assert calls.count("device unusable") == 1
    assert calls.index("device unusable") < calls.index("complete") == len(calls) - 1
    completion = service.calls[-1][1]
    assert completion["state"] == "failed"
    assert completion["reason"].startswith(
        "RuntimeError: CUDA error: an illegal memory access was encountered"
    )


def test_a_sticky_cuda_error_at_the_trials_end_says_the_device_is_unusable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = BrokenCompletionService(torch.AcceleratorError("CUDA error: unspecified failure"))
    outcome, calls = run_trial_noting_device(monkeypatch, service, ScriptedTrainer(epochs=2))
    assert outcome == "failed"
    assert calls == ["report", "broken completion", "device unusable", "complete"]


def test_an_ordinary_failure_leaves_the_process_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    service = RecordingService()
    outcome, calls = run_trial_noting_device(
        monkeypatch, service, ScriptedTrainer(epochs=2, failure="the loss is nan")
    )
    assert outcome == "failed" and "device unusable" not in calls


class EndedService(RecordingService):
    """A heartbeat finds the trial over (its completion, or a report's prune, came first)."""

    def heartbeat(self, trial_id: int, lease: str) -> None:
        self._note("heartbeat", None)
        raise TrialGone(409, {"error": f"trial {trial_id} is complete, not running"})


def heartbeat_of(service: RecordingService) -> tuple[Any, TrialEnding, ReportPipeline]:
    ending = TrialEnding(service, 7, "lease-1")  # type: ignore[arg-type]
    reports = ReportPipeline(ending.report, min_interval_s=60)
    return partial(trial_runner._heartbeat, service, ending, reports), ending, reports


def test_a_heartbeat_meeting_the_trial_s_end_is_no_loss_and_raises_nothing() -> None:
    service = EndedService()
    heartbeat, ending, reports = heartbeat_of(service)
    ending.ending = True  # the completion is under way: nothing to renew
    heartbeat()
    assert service.calls == []
    ending.ending = False
    with pytest.raises(TrialGone):  # not ending: the trial was taken away
        heartbeat()
    with pytest.raises(TrialGone):  # and the next report says so to the trainer
        reports.report(1, 0.5)
    reports.close()


class EndingMeanwhileService(RecordingService):
    """The trial's completion is recorded while its heartbeat is on the way."""

    ending: TrialEnding

    def heartbeat(self, trial_id: int, lease: str) -> None:
        self._note("heartbeat", None)
        self.ending.ending = True
        raise TrialGone(409, {"error": f"trial {trial_id} is complete, not running"})


def test_a_heartbeat_that_meets_the_completion_on_its_way_raises_nothing() -> None:
    service = EndingMeanwhileService()
    heartbeat, ending, reports = heartbeat_of(service)
    service.ending = ending
    heartbeat()  # the 409 is the end this worker sent: no loss, nothing raised
    assert [call for call, _ in service.calls] == ["heartbeat"]
    reports.report(1, 0.5)  # not taken away: the next report goes as usual
    reports.close()


def test_a_heartbeat_after_a_completion_began_is_not_sent() -> None:
    service = RecordingService()
    heartbeat, ending, reports = heartbeat_of(service)
    ending.complete({"value": 0.5}, [], {})
    heartbeat()
    assert [call for call, _ in service.calls] == ["complete"]
    reports.close()


class StepsTrainer(ScriptedTrainer):
    """Reports the given steps, in the given order (a trainer of one's own may repeat a step,
    or go back)."""

    def __init__(self, steps: list[int]) -> None:
        super().__init__(epochs=len(steps))
        self.steps = steps

    def train(self, run: TrialRun, report: Any) -> TrainResult:
        for step in self.steps:
            report(step, 1.0 / step)
        return TrainResult(value=0.25, epochs_run=len(self.steps))


class StepOrderService(StepNamingService):
    """Refuses, as the service does, a request whose steps do not rise, and a completion
    bringing a step not above every one reported."""

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        steps = [step for step, _ in reports]
        if steps != sorted(set(steps)):
            raise HPOError(422, {"error": "the steps must rise", "problems": []})
        return super().report_many(trial_id, reports, lease, provenance)

    def complete(self, trial_id: int, **fields: Any) -> dict[str, Any]:
        sent = [step for call, step in self.calls if call == "report"]
        brought = [step for step, _ in fields.get("reports") or []]
        if brought != sorted(set(brought)) or any(step <= max(sent, default=0) for step in brought):
            raise HPOError(422, {"error": "each after the last step reported", "problems": []})
        return super().complete(trial_id, **fields)


@pytest.mark.parametrize("steps", [[1, 3, 2, 4], [1, 2, 2, 3], [1, 5, 2, 3, 6]])
def test_steps_reported_again_or_back_go_in_requests_the_service_takes(
    monkeypatch: pytest.MonkeyPatch, steps: list[int]
) -> None:
    """Held with the others, such a step made a request the service refuses: the trial
    failed (it did without a pruner)."""
    service = StepOrderService()
    assert run_trial(monkeypatch, service, StepsTrainer(steps)) == "complete"
    assert reported_steps(service) == steps
