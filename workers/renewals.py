"""Renewing a lease in the background while the work it covers runs (a trial's heartbeats, a
study job's restarts), so work longer than the lease does not lose it."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)
RENEWALS_PER_LEASE = 4


@contextmanager
def renewed(what: str, renew: Callable[[], object], lease_s: float) -> Iterator[None]:
    """Call ``renew`` every quarter of ``lease_s`` until the block ends. A failed renewal is
    logged: the work's next request says whether it is still the worker's."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(lease_s / RENEWALS_PER_LEASE):
            try:
                renew()
            except Exception as error:
                logger.warning("%s: not renewed: %s", what, error)

    # With the log context of the work it renews: its lines name the study and the trial.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(loop,), name=f"renew-{what}", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
