"""The timer that expires trial leases in the API process, so they expire even with no worker alive."""

from __future__ import annotations

import logging
import threading

from service.tuner import Tuner

logger = logging.getLogger(__name__)


def start_lease_reaper(tuner: Tuner, interval_s: float) -> threading.Event | None:
    """Run ``tuner.expire_leases`` every ``interval_s`` in a daemon thread; set the event to stop it."""
    if interval_s <= 0:
        return None
    stop = threading.Event()

    def reap() -> None:
        while not stop.wait(interval_s):
            try:
                expired = tuner.expire_leases()
            except Exception:  # a database outage must not end the timer
                logger.exception("lease expiry failed; trying again in %s s", interval_s)
                continue
            if expired:
                logger.warning("leases expired for trials %s", expired)

    threading.Thread(target=reap, name="hpo-lease-reaper", daemon=True).start()
    return stop
