"""A trainer whose GPU breaks as a real one does after an illegal memory access, for the tests of
the worker's replacement of a process whose device is unusable (``workers/device_errors.py``).

Trial number 0 fails with PyTorch's message of a sticky CUDA error; from then on, as on a real
GPU, every trial the same process runs fails with it too. Each trial first appends its number and
its process id to the file named by the trainer setting ``pid_file``.
"""

from __future__ import annotations

import os
from pathlib import Path

from workers.trainers.base import EpochReporter, TrainResult, TrialRun

ILLEGAL_ACCESS = "CUDA error: an illegal memory access was encountered"
EPOCHS = 2


class StickyDeviceTrainer:
    """Breaks its process's "GPU" at trial number 0; trains two epochs otherwise."""

    def __init__(self) -> None:
        self.device_broken = False  # one instance per process (workers/trainer_loader.py)

    def train(self, run: TrialRun, report: EpochReporter) -> TrainResult:
        with Path(run.settings["pid_file"]).open("a", encoding="utf-8") as pids:
            pids.write(f"{run.number} {os.getpid()}\n")
        if run.number == 0 or self.device_broken:
            self.device_broken = True
            raise RuntimeError(ILLEGAL_ACCESS)
        for epoch in range(1, EPOCHS + 1):
            if report(epoch, 1.0 / epoch):
                return TrainResult(value=1.0 / epoch, epochs_run=epoch, pruned=True)
        return TrainResult(value=1.0 / EPOCHS, epochs_run=EPOCHS)
