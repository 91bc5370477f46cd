"""The background renewal behind a trial's heartbeats and a study job's restarts."""

from __future__ import annotations

import time

from workers.renewals import renewed


def test_it_renews_until_the_block_ends_and_outlives_a_failed_renewal() -> None:
    calls: list[float] = []

    def renew() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise ConnectionError("the service is out of reach for a moment")

    with renewed("work", renew, lease_s=0.2):  # every 0.05 s
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    ended = len(calls)
    assert ended >= 3  # the first renewal's error did not stop the next ones
    time.sleep(0.2)
    assert len(calls) == ended  # none after the block
