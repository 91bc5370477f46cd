"""A trial that breaks its process's GPU (a sticky CUDA error) fails with its reason, and the
Celery worker replaces that pool process before it takes another trial: the next trials run in
a fresh process and complete, instead of failing one after another in the broken one.

Real parts: Redis, the API and a Celery worker of one pool process (so the process that takes
the next trial is the broken one's replacement, not a sibling), with a trainer declared as an
``hpo.trainers`` entry point of a distribution on the processes' ``PYTHONPATH``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cli.local_stack import LocalStack
from tests.integration.conftest import unique
from tests.support.sticky_device_trainer import ILLEGAL_ACCESS
from tests.support.studies import wait_for_end

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TRAINER_NAME = "sticky-device"
TRAINER_ENTRY_POINT = "tests.support.sticky_device_trainer:StickyDeviceTrainer"
N_TRIALS = 4


def trainer_distribution(directory: Path) -> Path:
    """A directory holding a distribution that declares the trainer's entry point."""
    dist_info = directory / "hpo_sticky_device_trainer-0.0.0.dist-info"
    dist_info.mkdir(parents=True)
    metadata = "Metadata-Version: 2.1\nName: hpo-sticky-device-trainer\nVersion: 0.0.0\n"
    (dist_info / "METADATA").write_text(metadata, encoding="utf-8")
    entry_points = f"[hpo.trainers]\n{TRAINER_NAME} = {TRAINER_ENTRY_POINT}\n"
    (dist_info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def one_process_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack with one worker pool process, whose API and worker see the trainer."""
    directory = tmp_path_factory.mktemp("sticky-device")
    found = [str(trainer_distribution(directory / "site")), str(ROOT)]
    python_path = os.pathsep.join([*found, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    running = LocalStack(
        f"sqlite:///{directory / 'hpo.db'}", workers=1, settings={"PYTHONPATH": python_path}
    )
    yield running.start()
    running.stop()


def ran_in(pid_file: Path) -> dict[int, list[int]]:
    """The process ids each trial number ran in, in order."""
    processes: dict[int, list[int]] = {}
    for line in pid_file.read_text(encoding="utf-8").splitlines():
        number, pid = (int(field) for field in line.split())
        processes.setdefault(number, []).append(pid)
    return processes


def test_a_sticky_cuda_error_fails_its_trial_and_the_next_trials_run_in_a_fresh_process(
    one_process_stack: LocalStack, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pids.txt"
    client = one_process_stack.client()
    created = client.create_study(
        {
            "name": unique("sticky-device"),
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
            "sampler": {"name": "random", "seed": 0},
            "pruner": {"name": "none"},
            "budget": {"n_trials": N_TRIALS, "max_concurrent_trials": 1},
            "trainer": {"name": TRAINER_NAME, "pid_file": str(pid_file)},
            "preflight": {"enabled": False},
        }
    )
    study = wait_for_end(client, created["study_id"], one_process_stack, timeout_s=120)
    trials = sorted(client.trials(created["study_id"]), key=lambda trial: trial["number"])
    states = [(t["number"], t["state"], (t["fail_reason"] or "").split("\n")[0]) for t in trials]
    assert study["state"] == "complete", states
    first, *later = trials
    assert first["state"] == "fail" and ILLEGAL_ACCESS in first["fail_reason"], states
    assert len(later) == N_TRIALS - 1, states
    assert all(t["state"] == "complete" for t in later), states

    processes = ran_in(pid_file)
    assert sorted(processes) == list(range(N_TRIALS)), processes
    # Trial 0 ran once: its message, sent back to the queue as the process left, was dropped.
    [broken] = processes[0]
    later_pids = {pid for number in range(1, N_TRIALS) for pid in processes[number]}
    assert broken not in later_pids, f"a later trial ran in the broken process: {processes}"
    assert not psutil.pid_exists(broken), "the broken process is still running"
    assert one_process_stack.worker is not None and one_process_stack.worker.alive()
