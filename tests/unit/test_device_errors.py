"""Which errors leave a worker process's GPU unusable, and how such a process leaves the pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from celery.signals import task_postrun

from workers.device_errors import is_sticky_device_error
from workers.process_retirement import RETIREMENT_RECEIVER, retire_after_this_task

STICKY_MESSAGES = [
    "CUDA error: an illegal memory access was encountered",
    "CUDA error: device-side assert triggered",
    "device-side assertion failed (compile with TORCH_USE_CUDA_DSA)",
    "CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, opa, opb, m, n, k, ...)`",
    "cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",
]


@pytest.mark.parametrize("message", STICKY_MESSAGES)
def test_a_runtime_error_naming_a_cuda_error_is_sticky(message: str) -> None:
    assert is_sticky_device_error(RuntimeError(message))


def test_pytorchs_accelerator_error_is_sticky_whatever_its_message() -> None:
    assert is_sticky_device_error(torch.AcceleratorError("unspecified launch failure"))


def test_a_cuda_error_a_trainer_wrapped_in_its_own_is_sticky() -> None:
    try:
        try:
            raise RuntimeError(STICKY_MESSAGES[0])
        except RuntimeError as cuda_error:
            raise ValueError("the batch could not be trained") from cuda_error
    except ValueError as wrapped:
        assert is_sticky_device_error(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 5x2)"),
        ValueError("CUDA error: only a RuntimeError from PyTorch counts"),
        KeyError("lr"),
    ],
)
def test_other_errors_are_not_sticky(error: BaseException) -> None:
    assert not is_sticky_device_error(error)


@pytest.fixture
def retirement_disconnected() -> Iterator[None]:
    """The test's process must not exit after a later task: the receiver goes afterwards."""
    yield
    task_postrun.disconnect(dispatch_uid=RETIREMENT_RECEIVER)


def test_a_retired_process_exits_after_the_tasks_other_receivers(
    retirement_disconnected: None,
) -> None:
    seen: list[Any] = []

    def count_outcome(retval: Any = None, **_: Any) -> None:
        seen.append(retval)

    task_postrun.connect(count_outcome, weak=False, dispatch_uid="test-count-outcome")
    try:
        retire_after_this_task()
        retire_after_this_task()  # twice: still one exit
        with pytest.raises(SystemExit) as exited:
            task_postrun.send(sender=None, task_id="trial-1", retval="failed")
    finally:
        task_postrun.disconnect(dispatch_uid="test-count-outcome")
    assert exited.value.code == 0
    assert seen == ["failed"]  # the outcome was counted before the exit
