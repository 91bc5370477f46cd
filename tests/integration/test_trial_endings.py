"""A trial ends in the service, complete or failed with its reason, whatever numbers its trainer
hands back and whatever the service refuses at its end: never in the worker's log alone, with the
trial left running until its lease expires and then run again.

The worker's trial runner runs in the test's process (or in a daemonic pool process, as in
Celery's prefork pool), with the real client (its JSON encoding refuses NaN and what is not a
float) against a real API, which claims, refuses and records as in production; the trainer is
scripted. No Celery worker runs, so the test claims its trials.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from billiard.pool import Pool
from torch.utils.data import DataLoader, TensorDataset

from cli.local_stack import LocalStack
from client import HPOJSONClient, ServiceUnreachable
from tests.integration.conftest import unique
from tests.support.outage_front import OutageFront
from workers import renewals, trial_runner
from workers.trainers.base import EpochReporter, TrainingFailed, TrainResult, TrialRun
from workers.trial_runner import TrialRunner

pytestmark = pytest.mark.integration
TRAINER = {"name": "mlp", "dataset": "digits", "epochs": 3}


@pytest.fixture(scope="module")
def workerless_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Trials are sent to a real broker that no worker reads: the test runs them itself."""
    directory: Path = tmp_path_factory.mktemp("endings")
    running = LocalStack(f"sqlite:///{directory / 'hpo.db'}", workers=0, log_level="WARNING")
    yield running.start()
    running.stop()


class Scripted:
    """A trainer that runs ``script(report)`` as its training."""

    def __init__(self, script: Any) -> None:
        self.script = script

    def train(self, run: TrialRun, report: EpochReporter) -> TrainResult:
        result: TrainResult = self.script(report)
        return result


def sent_message(client: HPOJSONClient) -> dict[str, Any]:
    """The task message of a new study's one trial, as the API sent it to the workers."""
    study = client.create_study(
        {
            "name": unique("endings"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
            "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": "none"},
            "budget": {"n_trials": 1, "max_concurrent_trials": 1},
            "trainer": TRAINER,
            "preflight": {"enabled": False},
        }
    )
    deadline = time.monotonic() + 30
    while not (trials := client.trials(study["study_id"])):
        assert time.monotonic() < deadline, "no trial was sent"
        time.sleep(0.1)
    trial = trials[0]
    return {
        "study_id": study["study_id"],
        "trial_id": trial["trial_id"],
        "number": trial["number"],
        "params": trial["params"],
        "trainer": TRAINER,
        "seed": trial["seed"] or 0,
    }


def run_trial(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch, script: Any
) -> tuple[str, dict[str, Any]]:
    """How the runner says the trial ended (it raised nothing), and the trial as the service
    recorded it."""
    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: Scripted(script))
    client = stack.client()
    message = sent_message(client)
    outcome = TrialRunner(HPOJSONClient(stack.url)).run(message, delivery="test")
    [trial] = client.trials(message["study_id"])
    return outcome, trial


def test_numpy_and_torch_numbers_complete_the_trial_as_floats(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    def script(report: EpochReporter) -> TrainResult:
        report(np.int64(1), np.float32(0.5))
        report(2, torch.tensor(0.25))
        records = [{"train_loss": np.float64(0.75)}, {"train_loss": torch.tensor(0.5)}]
        metrics = {"n_parameters": np.int64(1234)}
        return TrainResult(torch.tensor(0.25), 2, metrics=metrics, epoch_metrics=records)

    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert outcome == "complete", trial["fail_reason"]
    assert trial["state"] == "complete" and trial["value"] == pytest.approx(0.25)
    assert trial["metrics"]["n_parameters"] == 1234
    assert list(trial["intermediate_values"].values()) == [0.5, 0.25]
    assert [r["train_loss"] for r in trial["epoch_metrics"]] == [0.75, 0.5]


def test_a_figure_of_an_epoch_that_is_not_finite_is_kept_as_null(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mixed-precision step the gradient scaler skipped: its gradient norm is not finite.
    def script(report: EpochReporter) -> TrainResult:
        report(1, 0.5)
        records = [{"grad_norm": math.inf, "train_loss": 0.7}, {"grad_norm": math.nan}]
        return TrainResult(0.5, 2, epoch_metrics=records)

    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert outcome == "complete", trial["fail_reason"]
    assert trial["value"] == 0.5
    assert [r["grad_norm"] for r in trial["epoch_metrics"]] == [None, None]
    assert trial["epoch_metrics"][0]["train_loss"] == 0.7


@pytest.mark.parametrize(
    ("value", "metrics", "expected"),
    [
        (math.nan, {}, "the trainer's value (the study's objective) is nan"),
        (0.5, {"validation_accuracy": np.float32("inf")}, "metric 'validation_accuracy' is inf"),
    ],
)
def test_a_result_that_is_not_finite_fails_the_trial_saying_so(
    workerless_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    value: float,
    metrics: dict[str, float],
    expected: str,
) -> None:
    def script(report: EpochReporter) -> TrainResult:
        report(1, 0.5)
        return TrainResult(value, 1, metrics=metrics, epoch_metrics=[{"train_loss": math.nan}])

    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert outcome == "failed"
    assert trial["state"] == "fail" and expected in trial["fail_reason"]
    assert trial["epoch_metrics"][0]["train_loss"] is None  # the records went with the failure
    assert trial["intermediate_values"] == {"1": 0.5}


def test_a_nan_report_stops_the_trial_and_fails_it_with_the_reason(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[bool] = []

    def script(report: EpochReporter) -> TrainResult:
        answers.extend([report(1, 0.5), report(2, math.nan)])
        return TrainResult(0.5, 2)  # a trainer that returns as if it were pruned

    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert answers == [False, True]  # told to stop at the NaN
    assert outcome == "failed"
    assert trial["fail_reason"] == "the validation value reported at epoch 2 is nan"
    assert trial["intermediate_values"] == {"1": 0.5}  # the report held before it was recorded


def test_a_nan_report_then_the_trainers_own_failure_keeps_the_trainers_reason(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What docs/trainers.md suggests for a diverging loss.
    def script(report: EpochReporter) -> TrainResult:
        report(1, 0.5)
        if report(2, math.nan):
            raise TrainingFailed("validation loss diverged at epoch 2", [{"train_loss": math.nan}])
        raise AssertionError("a NaN report must stop the trial")

    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert outcome == "failed"
    assert trial["fail_reason"] == "validation loss diverged at epoch 2"
    assert trial["epoch_metrics"][0]["train_loss"] is None
    assert trial["intermediate_values"] == {"1": 0.5}


def too_many_figures(report: EpochReporter) -> TrainResult:
    report(1, 0.5)
    return TrainResult(0.5, 1, epoch_metrics=[{f"figure_{i}": 1.0 for i in range(40)}])


def body_too_large(report: EpochReporter) -> TrainResult:
    report(1, 0.5)
    names = [f"a_figure_with_a_long_name_to_fill_the_body_{i:02d}_" + "x" * 10 for i in range(32)]
    records = [{name: 0.123456789 for name in names}] * 1000  # about 2.5 MB of JSON
    return TrainResult(0.5, 1, epoch_metrics=records)


@pytest.mark.parametrize(
    ("script", "refusal", "named"),
    [(too_many_figures, "422", "epoch_metrics.0"), (body_too_large, "413", "more than the limit")],
)
def test_a_result_refused_twice_with_its_records_fails_the_trial_without_them(
    workerless_stack: LocalStack,
    monkeypatch: pytest.MonkeyPatch,
    script: Any,
    refusal: str,
    named: str,
) -> None:
    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert outcome == "failed"
    assert trial["state"] == "fail"
    reason = trial["fail_reason"]
    assert reason.startswith(f"the service refused the trial's result: {refusal}")
    assert named in reason  # what the refusal named, the field where its message does not
    assert "sent without epoch records or provenance" in reason
    assert trial["epoch_metrics"] == []
    assert trial["intermediate_values"] == {"1": 0.5}


def test_a_reason_that_is_not_unicode_text_is_recorded_escaped(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file name that is not UTF-8, as Python decodes it (surrogateescape): a lone surrogate.
    path = b"/data/caf\xe9.npz".decode("utf-8", errors="surrogateescape")

    def script(report: EpochReporter) -> TrainResult:
        report(1, 0.5)
        raise TrainingFailed(f"could not read {path}", [{"train_loss": 0.7}])

    outcome, trial = run_trial(workerless_stack, monkeypatch, script)
    assert outcome == "failed"
    assert trial["fail_reason"] == "could not read /data/caf\\udce9.npz"
    assert trial["epoch_metrics"][0]["train_loss"] == 0.7


def with_data_loader_workers(report: EpochReporter) -> TrainResult:
    loader = DataLoader(TensorDataset(torch.arange(8.0)), batch_size=4, num_workers=2)
    report(1, float(sum(len(batch) for (batch,) in loader)))
    return TrainResult(0.5, 1)


def run_in_pool_process(url: str, message: dict[str, Any]) -> str:
    return TrialRunner(HPOJSONClient(url)).run(message, delivery="pool")


def test_a_data_loader_with_worker_processes_fails_the_trial_saying_how_to_load_data(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        trial_runner, "load_trainer", lambda name: Scripted(with_data_loader_workers)
    )
    client = workerless_stack.client()
    message = sent_message(client)
    with Pool(1) as pool:  # billiard's daemonic processes, as Celery's prefork pool has them
        outcome = pool.apply(run_in_pool_process, (workerless_stack.url, message))
    [trial] = client.trials(message["study_id"])
    assert outcome == "failed"
    assert trial["fail_reason"].startswith("the trainer started a process (a DataLoader with")
    assert "num_workers=0" in trial["fail_reason"]
    assert "daemonic processes are not allowed to have children" in trial["fail_reason"]


def test_the_trial_runs_as_the_service_holds_it_not_as_the_message_says(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone who can write to the broker can send a message naming a queued trial: the claim's
    answer, not the message, says what to run."""
    ran: list[TrialRun] = []

    class Recording:
        def train(self, run: TrialRun, report: EpochReporter) -> TrainResult:
            ran.append(run)
            return TrainResult(0.5, 1)

    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: Recording())
    client = workerless_stack.client()
    message = sent_message(client)
    forged = {
        **message,
        "params": {"lr": 0.99},
        "seed": 12345,
        "trainer": {**TRAINER, "epochs": 500},
    }
    assert TrialRunner(HPOJSONClient(workerless_stack.url)).run(forged) == "complete"
    [run] = ran
    assert (run.params, run.seed, run.settings) == (message["params"], message["seed"], TRAINER)


def reporting_epochs(report: EpochReporter) -> TrainResult:
    """Reports an epoch every 50 ms for up to 5 s: a background send's answer reaches it."""
    for epoch in range(1, 101):
        report(epoch, 0.5)
        time.sleep(0.05)
    return TrainResult(0.5, 100)


def run_with_reports_answered(
    stack: LocalStack, message: dict[str, Any], status: int
) -> tuple[str, list[str]]:
    """Run the trial of ``message`` with its reports answered ``status`` after the client's
    retries (none), its other requests reaching the API: how the runner says it ended, and the
    paths answered ``status``."""
    with OutageFront(stack.url, status, failing_suffix="/reports") as front:
        outcome = TrialRunner(HPOJSONClient(front.url, retries=0)).run(message, delivery="test")
    return outcome, front.failed


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_report_the_service_cannot_record_for_an_outage_leaves_the_trial_to_its_lease(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    """Not the trainer's failure: the runner raises, as for a service out of reach, and the trial
    stays running until its lease expires and it runs again with the same parameters."""
    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: Scripted(reporting_epochs))
    client = workerless_stack.client()
    message = sent_message(client)
    with pytest.raises(ServiceUnreachable, match=f"{status}: the service is unavailable"):
        run_with_reports_answered(workerless_stack, message, status)
    [trial] = client.trials(message["study_id"])
    assert trial["state"] == "running" and not trial["fail_reason"]


def test_a_report_the_service_answers_500_fails_the_trial_with_it(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 500 is the service's bug, not an outage that waiting outlasts: the trial fails, saying so."""
    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: Scripted(reporting_epochs))
    client = workerless_stack.client()
    message = sent_message(client)
    outcome, failed = run_with_reports_answered(workerless_stack, message, 500)
    assert outcome == "failed" and failed
    [trial] = client.trials(message["study_id"])
    assert trial["state"] == "fail"
    assert "HPOError: 500: the service is unavailable" in trial["fail_reason"]


def test_a_trial_whose_heartbeat_finds_it_taken_away_stops_at_its_next_report(
    workerless_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lease was taken away (its study deleted here; expired, elsewhere): the trainer's next
    report raises ``TrialGone`` instead of being held for a send that the service would refuse,
    so the trainer trains no further epoch."""
    monkeypatch.setattr(renewals, "RENEWALS_PER_LEASE", 2400)  # a heartbeat every 50 ms
    client = workerless_stack.client()
    message = sent_message(client)
    epochs_after_the_loss: list[int] = []

    def script(report: EpochReporter) -> TrainResult:
        report(1, 0.5)
        deadline = time.monotonic() + 10
        while not client.trials(message["study_id"])[0]["intermediate_values"]:
            assert time.monotonic() < deadline, "the first report was not recorded"
            time.sleep(0.05)
        client.delete(message["study_id"])
        time.sleep(1)  # the heartbeats find the trial gone; no report is out
        for epoch in (2, 3):
            report(epoch, 0.5)
            epochs_after_the_loss.append(epoch)
        return TrainResult(0.5, 3)

    monkeypatch.setattr(trial_runner, "load_trainer", lambda name: Scripted(script))
    runner = TrialRunner(HPOJSONClient(workerless_stack.url))
    assert runner.run(message, delivery="test") == "gone"
    assert epochs_after_the_loss == []
