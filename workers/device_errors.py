"""Which errors leave a process's GPU unusable for good.

A CUDA error is sticky: after an illegal memory access or a device-side assert, the CUDA context
of the process is broken and every later CUDA call in it fails, so every later trial that process
takes fails too. Such a trial's process must be replaced (``workers/process_retirement.py``). An
out-of-memory error is not one of them: ``torch.OutOfMemoryError`` leaves the context usable.
"""

from __future__ import annotations

import sys

# What PyTorch's messages of a broken CUDA context contain, where the error is a plain
# RuntimeError (PyTorch before AcceleratorError, or an error raised from a CUDA library):
# "CUDA error: an illegal memory access was encountered", "CUDA error: device-side assert
# triggered", "CUBLAS_STATUS_EXECUTION_FAILED when calling cublasSgemm", "cuDNN error:
# CUDNN_STATUS_INTERNAL_ERROR". A few that are not sticky (CUBLAS_STATUS_NOT_INITIALIZED after
# an out-of-memory) match too: replacing a sound process costs seconds, keeping a broken one
# costs every trial it takes.
STICKY_ERROR_MARKS = ("CUDA error", "device-side assert", "CUBLAS_STATUS", "cuDNN error")
CAUSES_CHECKED = 8  # how far down an error's causes to look (a trainer may wrap the error)


def is_sticky_device_error(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from, leaves the process's GPU unusable:
    PyTorch's ``AcceleratorError`` (a failed CUDA call, from PyTorch 2.8), or a
    ``RuntimeError`` whose message names a CUDA, cuBLAS or cuDNN error."""
    accelerator_error = _accelerator_error_type()
    for cause in _causes(error):
        if accelerator_error is not None and isinstance(cause, accelerator_error):
            return True
        if isinstance(cause, RuntimeError) and any(m in str(cause) for m in STICKY_ERROR_MARKS):
            return True
    return False


def _accelerator_error_type() -> type[BaseException] | None:
    """PyTorch's ``AcceleratorError``, where PyTorch is loaded and has it: an error from a
    process that never imported PyTorch did not come from CUDA (so nothing is imported here)."""
    torch = sys.modules.get("torch")
    found = getattr(torch, "AcceleratorError", None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the errors it was raised from or during, nearest first."""
    chain = [error]
    while len(chain) < CAUSES_CHECKED:
        cause = chain[-1].__cause__ or chain[-1].__context__
        if cause is None or any(cause is seen for seen in chain):
            break
        chain.append(cause)
    return chain
