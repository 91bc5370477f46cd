"""Objects that live as long as the process, kept out of the cyclic garbage collector's scans.

A full collection walks every tracked object. After the imports (Optuna, SQLAlchemy, pydantic,
Flask; PyTorch in a worker) a process holds about 370,000, and a full collection took 170-210 ms
here, holding the GIL: every request in flight in the API, or a worker's epoch, waited that long.
Frozen once at start-up, what is left to walk is what the process made since: 2-25 ms.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Move every object alive now (modules, classes, the app and its settings: what lives as
    long as the process) out of the collector's generations for good; the number frozen. Call
    once, when start-up is done and before the work begins.

    No collection first: one would cost as much as the pause this saves, and after the imports
    it found nothing to free here (the automatic ones had). Cyclic garbage alive at the call
    would stay for good; what is freed by reference counting still is."""
    gc.freeze()
    return gc.get_freeze_count()
