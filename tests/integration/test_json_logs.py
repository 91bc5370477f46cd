"""Structured logs from a real run: every line of the API's and the worker's output is a JSON
object, and the lines about a trial name its study and trial."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from cli.local_stack import LocalStack
from cli.processes import wait_until
from tests.integration.conftest import unique
from tests.support.logs import log_messages
from tests.support.studies import wait_for_end
from workers.trial_claim import NO_SUCH_TRIAL

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N_TRIALS = 4


def tasks_succeeded(worker_log: Path) -> int:
    """How many trial tasks the worker has logged as succeeded."""
    messages = log_messages(worker_log)  # read while the worker writes: a line may be half there
    return sum(1 for m in messages if m.startswith("Task hpo.run_trial[") and "succeeded" in m)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file, each parsed as one JSON object (a line that is not fails)."""
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"{path.name}: not a JSON line: {line!r}")
        assert isinstance(records[-1], dict), line
    return records


@pytest.fixture(scope="module")
def run(stack: LocalStack) -> dict[str, Any]:
    client = stack.client()
    spec = {
        "name": unique("logs"),
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 2},
        "trainer": {"name": "mlp", "dataset": "digits", "epochs": 3},
    }
    study_id = client.create_study(spec)["study_id"]
    wait_for_end(client, study_id, stack)
    assert stack.api is not None and stack.worker is not None
    worker_log = stack.worker.log_path
    # The worker logs a task's end just after its completion call: wait for the last one's.
    wait_until(lambda: tasks_succeeded(worker_log) >= N_TRIALS, 30, "the worker's task ends")
    return {
        "study_id": study_id,
        "trial_ids": [trial["trial_id"] for trial in client.trials(study_id)],
        "api": json_lines(stack.api.log_path),
        "worker": json_lines(stack.worker.log_path),
    }


def test_every_line_is_a_json_object_with_time_level_logger_and_message(
    run: dict[str, Any],
) -> None:
    for record in run["api"] + run["worker"]:
        assert {"time", "level", "logger", "message"} <= record.keys(), record
    assert len(run["api"]) > N_TRIALS
    assert len(run["worker"]) > N_TRIALS
    # The worker's token check at its start is answered as a trial that does not exist (it was a
    # 422 for trial 0, logged as a warning at every start).
    assert not any("token check" in record["message"] for record in run["worker"])


def test_the_level_follows_hpo_log_level(stack: LocalStack, run: dict[str, Any]) -> None:
    assert stack.log_level == "INFO"
    levels = {record["level"] for record in run["api"] + run["worker"]}
    assert "INFO" in levels
    assert "DEBUG" not in levels


def test_api_lines_about_a_trial_name_the_trial_and_its_study(run: dict[str, Any]) -> None:
    trial_path = re.compile(r"/trials/(\d+)/")
    reported: set[int] = set()
    for record in run["api"]:
        found = trial_path.search(record["message"])
        if found is None:
            continue
        trial_id = int(found.group(1))
        if trial_id == NO_SUCH_TRIAL:  # the worker's token check at its start: no trial, no study
            continue
        assert record.get("trial_id") == trial_id, record
        assert record.get("study_id") == run["study_id"], record
        if "/report " in record["message"] or "/reports " in record["message"]:
            reported.add(trial_id)
    assert reported == set(run["trial_ids"])


def test_the_access_log_keeps_the_lease_of_a_checkpoint_s_upload_out(run: dict[str, Any]) -> None:
    uploads = [r["message"] for r in run["api"] if "/checkpoint?" in r["message"]]
    assert uploads, "no checkpoint was uploaded"
    assert all("?lease=… " in line for line in uploads), uploads[:3]


def test_api_lines_about_a_study_name_it(run: dict[str, Any]) -> None:
    study_lines = [r for r in run["api"] if f"/studies/{run['study_id']} " in r["message"]]
    assert study_lines
    assert all(record.get("study_id") == run["study_id"] for record in study_lines)


def test_worker_lines_of_each_trial_task_name_the_trial_and_its_study(
    run: dict[str, Any],
) -> None:
    for trial_id in run["trial_ids"]:
        lines = [r for r in run["worker"] if r.get("trial_id") == trial_id]
        messages = " | ".join(record["message"] for record in lines)
        assert "task started" in messages, trial_id
        assert "Task hpo.run_trial[" in messages and "succeeded" in messages, messages
        assert all(record.get("study_id") == run["study_id"] for record in lines)
