"""Delivery lanes: one queue and one thread per webhook receiver, so that a receiver that is slow
or out of reach holds up only its own events, never another receiver's.

A lane delivers its receiver's events one at a time, in the order they were put, so the events
of one study (which has one URL, hence one receiver) keep their order. A lane starts with its
receiver's first event and ends after ``idle_s`` with nothing to deliver, or sooner where a new
receiver needs its room. Memory and threads stay bounded whatever the receivers do: at most
``max_lanes`` lanes at once, each holding at most ``max_queued`` events; an event past either
bound (every lane busy delivering or holding events) is refused (``LaneFull``), never waited for.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

MAX_LANES = 64
MAX_QUEUED_PER_LANE = 500
IDLE_S = 60.0

Event = TypeVar("Event")


class LaneFull(Exception):
    """The event was not queued: its receiver's lane is full, or there are too many lanes."""


class DeliveryLanes(Generic[Event]):
    """Lanes keyed by receiver; ``deliver`` runs in the receiver's lane thread and must not raise
    (an exception would end the lane's thread with events still queued behind it)."""

    def __init__(
        self,
        deliver: Callable[[Event], None],
        *,
        max_lanes: int = MAX_LANES,
        max_queued: int = MAX_QUEUED_PER_LANE,
        idle_s: float = IDLE_S,
    ) -> None:
        self._deliver = deliver
        self.max_lanes = max_lanes
        self.max_queued = max_queued
        self.idle_s = idle_s
        self._lanes: dict[str, queue.Queue[Event | None]] = {}
        # Held to put an event and to end an idle lane, so no event lands in a lane that ends.
        self._guard = threading.Lock()

    def put(self, receiver: str, event: Event) -> None:
        """Queue ``event`` behind ``receiver``'s earlier ones, starting its lane if it has none;
        never blocks (``LaneFull`` where a bound refuses it)."""
        with self._guard:
            lane = self._lanes.get(receiver)
            if lane is None:
                lane = self._open(receiver)
            try:
                lane.put_nowait(event)
            except queue.Full:
                raise LaneFull(f"{self.max_queued} events already queued for {receiver}") from None

    def receivers(self) -> list[str]:
        """The receivers that have a lane now (delivering, or idle for less than ``idle_s``)."""
        with self._guard:
            return sorted(self._lanes)

    def _open(self, receiver: str) -> queue.Queue[Event | None]:
        """A new lane and its thread (the caller holds the guard). At the bound, an idle lane
        (nothing queued, nothing being delivered) is ended first to make room."""
        if len(self._lanes) >= self.max_lanes and not self._end_an_idle_lane():
            raise LaneFull(f"{self.max_lanes} other receivers have deliveries under way")
        lane: queue.Queue[Event | None] = queue.Queue(self.max_queued)
        name = f"hpo-webhooks {receiver}"
        threading.Thread(target=self._run, args=(receiver, lane), name=name, daemon=True).start()
        self._lanes[receiver] = lane  # once its thread runs: a lane never waits without one
        return lane

    def _end_an_idle_lane(self) -> bool:
        """End one lane with nothing queued or being delivered (the caller holds the guard): its
        thread gets the end (``None``) and stops. Whether there was one."""
        for receiver, lane in self._lanes.items():
            if lane.unfinished_tasks == 0:  # every event put was delivered (``task_done``)
                del self._lanes[receiver]
                lane.put_nowait(None)
                return True
        return False

    def _run(self, receiver: str, lane: queue.Queue[Event | None]) -> None:
        """Deliver the lane's events in order until it has been idle for ``idle_s``, or is
        ended to make room for another receiver's."""
        while True:
            try:
                event = lane.get(timeout=self.idle_s)
            except queue.Empty:
                if self._close_if_idle(receiver, lane):
                    return
                continue
            if event is None:
                return
            try:
                self._deliver(event)
            finally:
                lane.task_done()  # until then the lane counts as busy, not idle

    def _close_if_idle(self, receiver: str, lane: queue.Queue[Event | None]) -> bool:
        """Remove the lane unless an event came in since the wait ended (checked under the guard
        that ``put`` holds, so none can come in between the check and the removal)."""
        with self._guard:
            if not lane.empty():
                return False
            if self._lanes.get(receiver) is lane:  # not ended already to make room
                del self._lanes[receiver]
            return True
