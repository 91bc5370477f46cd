"""How many CPU threads a worker process gives PyTorch (each case in a fresh interpreter: the
count, once set, stays for the process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A pool process (index 0) of a worker, as Celery's worker_process_init hook finds it.
SHARE_OUT = """
import os, sys
from billiard.process import current_process
current_process().index = 0
from service.settings import Settings
from workers.celery_app import _share_out_devices
import torch
_share_out_devices(Settings(gpus=sys.argv[1], worker_torch_threads=int(sys.argv[2])))
print(torch.get_num_threads(), os.environ.get("CUDA_VISIBLE_DEVICES", "-"))
"""


def threads_and_devices(gpus: str, torch_threads: int) -> tuple[int, str]:
    ran = subprocess.run(
        [sys.executable, "-c", SHARE_OUT, gpus, str(torch_threads)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    threads, devices = ran.stdout.split()
    return int(threads), devices


@pytest.mark.parametrize("gpus", ["", "1"])
def test_the_threads_setting_holds_on_the_cpu_and_with_a_gpu(gpus: str) -> None:
    # With a GPU it was left out: PyTorch took every core of the node, whatever the pod's CPUs.
    assert threads_and_devices(gpus, 3) == (3, gpus or "-")


def test_on_the_cpu_without_the_setting_the_cores_are_shared_out() -> None:
    assert threads_and_devices("", 0) == (max(1, os.cpu_count() or 1), "-")
