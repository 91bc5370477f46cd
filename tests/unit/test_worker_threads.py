"""How many CPU threads a worker process gives PyTorch (each case in a fresh interpreter: the
count, once set, stays for the process; no HPO_ variable of the shell's comes along)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A pool process (index 0) of a worker, as Celery's worker_process_init hook finds it; prints
# the threads PyTorch had before and has after, and the GPU the process sees.
SHARE_OUT = """
import os, sys
from billiard.process import current_process
current_process().index = 0
from service.settings import Settings
from workers.celery_app import _share_out_devices
import torch
before = torch.get_num_threads()
gpus, threads, processes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
_share_out_devices(Settings(gpus=gpus, worker_torch_threads=threads, worker_concurrency=processes))
print(before, torch.get_num_threads(), os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
"""


def threads(gpus: str, torch_threads: int, processes: int = 1) -> tuple[int, int, str]:
    """PyTorch's threads before and after, and CUDA_VISIBLE_DEVICES."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HPO_")}
    ran = subprocess.run(
        [sys.executable, "-c", SHARE_OUT, gpus, str(torch_threads), str(processes)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    before, after, devices = ran.stdout.split()
    return int(before), int(after), devices


def test_the_threads_setting_holds_on_the_cpu() -> None:
    assert threads("", 3)[1:] == (3, "-")


def test_the_threads_setting_holds_with_a_gpu() -> None:
    """It was left out there: PyTorch took every core of the node, whatever the pod's CPUs."""
    assert threads("1", 3)[1:] == (3, "1")


def test_without_the_setting_a_gpu_process_keeps_pytorch_s_default() -> None:
    before, after, devices = threads("1", 0, processes=2)
    assert (after, devices) == (before, "1")


def test_without_the_setting_the_cores_are_shared_out_between_the_cpu_processes() -> None:
    assert threads("", 0, processes=2)[1:] == (max(1, (os.cpu_count() or 1) // 2), "-")
