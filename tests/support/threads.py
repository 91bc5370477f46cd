"""Running calls at the same moment, for tests of requests that race."""

from __future__ import annotations

import threading
from collections.abc import Callable


def at_once(*calls: Callable[[], object]) -> None:
    """Run ``calls`` in threads released together (a barrier), and wait for them."""
    meet = threading.Barrier(len(calls))
    threads = [threading.Thread(target=lambda c=call: (meet.wait(), c())) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
