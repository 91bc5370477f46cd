"""Webhook deliveries in lanes, one per receiver: a receiver held up delays only its own events,
each receiver's events keep their order, idle lanes end, and the bounds refuse, never wait."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cli.processes import wait_until
from service.webhook_lanes import DeliveryLanes, LaneFull
from service.webhooks import Delivery, WebhookSender, receiver_of

SECRET = "0123456789abcdef-secret"


class HeldDeliveries:
    """A ``deliver`` that notes each event and holds those of receiver ``held`` until released."""

    def __init__(self, held: str = "") -> None:
        self.held = held
        self.started: list[tuple[str, int]] = []
        self.delivered: list[tuple[str, int]] = []
        self.release = threading.Event()

    def __call__(self, event: tuple[str, int]) -> None:
        self.started.append(event)
        if event[0] == self.held:
            self.release.wait(30)
        self.delivered.append(event)

    def of(self, receiver: str) -> list[int]:
        return [number for name, number in self.delivered if name == receiver]


def test_a_receiver_held_up_delays_no_other_and_each_keeps_its_order() -> None:
    deliveries = HeldDeliveries(held="slow")
    lanes: DeliveryLanes[tuple[str, int]] = DeliveryLanes(deliveries)
    for number in range(3):
        lanes.put("slow", ("slow", number))
    for number in range(20):
        lanes.put("fast", ("fast", number))
    wait_until(lambda: len(deliveries.of("fast")) == 20, 5, "the fast receiver's events")
    assert deliveries.of("fast") == list(range(20))
    assert deliveries.of("slow") == []  # its first is still held
    deliveries.release.set()
    wait_until(lambda: len(deliveries.of("slow")) == 3, 5, "the slow receiver's events")
    assert deliveries.of("slow") == [0, 1, 2]


def test_an_idle_lane_ends_and_a_later_event_starts_a_new_one() -> None:
    deliveries = HeldDeliveries()
    lanes: DeliveryLanes[tuple[str, int]] = DeliveryLanes(deliveries, idle_s=0.2)
    lanes.put("a", ("a", 1))
    assert lanes.receivers() == ["a"]
    wait_until(lambda: not lanes.receivers(), 5, "the idle lane's end")
    assert not any(t.name == "hpo-webhooks a" for t in threading.enumerate())
    lanes.put("a", ("a", 2))
    wait_until(lambda: deliveries.of("a") == [1, 2], 5, "the event on a new lane")


def test_an_event_past_the_bounds_is_refused_not_waited_for() -> None:
    deliveries = HeldDeliveries(held="a")
    lanes: DeliveryLanes[tuple[str, int]] = DeliveryLanes(deliveries, max_lanes=1, max_queued=1)
    lanes.put("a", ("a", 1))
    wait_until(lambda: deliveries.started == [("a", 1)], 5, "the first event in delivery")
    lanes.put("a", ("a", 2))  # queued behind it
    with pytest.raises(LaneFull, match="1 events already queued for a"):
        lanes.put("a", ("a", 3))
    with pytest.raises(LaneFull, match="1 other receivers"):
        lanes.put("b", ("b", 1))
    deliveries.release.set()
    wait_until(lambda: deliveries.of("a") == [1, 2], 5, "the queued events")


def test_at_the_bound_an_idle_lane_makes_room_and_a_busy_one_does_not() -> None:
    deliveries = HeldDeliveries(held="busy")
    lanes: DeliveryLanes[tuple[str, int]] = DeliveryLanes(deliveries, max_lanes=2, idle_s=60)
    lanes.put("busy", ("busy", 1))
    lanes.put("idle", ("idle", 1))
    wait_until(lambda: deliveries.of("idle") == [1], 5, "the idle receiver's event")
    assert lanes.receivers() == ["busy", "idle"]  # both lanes open: the idle one for 60 s more
    lanes.put("new", ("new", 1))  # the idle lane ends to make room
    wait_until(lambda: deliveries.of("new") == [1], 5, "the new receiver's event")
    assert lanes.receivers() == ["busy", "new"]
    wait_until(
        lambda: not any(t.name == "hpo-webhooks idle" for t in threading.enumerate()),
        5,
        "the ended lane's thread to stop",
    )
    deliveries.held = "new"  # "new" is idle again, and would make room: hold it delivering
    lanes.put("new", ("new", 2))
    wait_until(lambda: ("new", 2) in deliveries.started, 5, "the new receiver's held event")
    with pytest.raises(LaneFull, match="2 other receivers"):
        lanes.put("third", ("third", 1))  # both lanes are delivering: no room
    deliveries.release.set()
    wait_until(lambda: deliveries.of("busy") == [1], 5, "the held events")


def test_a_receiver_is_the_urls_scheme_host_and_port() -> None:
    assert receiver_of("https://Hooks.Example.org/a?x=1") == "https://hooks.example.org:443"
    assert receiver_of("https://hooks.example.org:443/b") == "https://hooks.example.org:443"
    assert receiver_of("http://hooks.example.org/a") == "http://hooks.example.org:80"
    assert receiver_of("http://hooks.example.org:8080/a") == "http://hooks.example.org:8080"


@pytest.fixture
def answering_receiver() -> Iterator[tuple[list[dict[str, Any]], str]]:
    """A receiver on 127.0.0.1 that answers each POST at once, keeping its JSON body."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield bodies, f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_receiver() -> Iterator[str]:
    """A port on 127.0.0.1 whose connections the kernel completes and nobody ever answers: each
    POST waits out its timeout (5 s), then the retries (about 30 s in all)."""
    listening = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield f"http://127.0.0.1:{listening.getsockname()[1]}/hook"
    listening.close()


def test_a_silent_receiver_holds_up_no_other_receivers_events(
    answering_receiver: tuple[list[dict[str, Any]], str], silent_receiver: str
) -> None:
    bodies, url = answering_receiver
    sender = WebhookSender()
    sender.allow_private = True  # both receivers are on loopback
    silent_started = threading.Event()

    def silent_payload() -> dict[str, Any]:
        silent_started.set()
        return {"study_id": 1}

    sender.enqueue(Delivery(silent_receiver, SECRET, "best_changed", silent_payload))
    assert silent_started.wait(5)
    for number in range(3):
        sender.enqueue(Delivery(url, SECRET, "best_changed", partial(dict, number=number)))
    sender.enqueue(Delivery(url, SECRET, "study_finished", lambda: {"state": "complete"}))
    # Within 5 s, while the silent receiver's delivery waits out its timeout and retries (30 s).
    wait_until(lambda: len(bodies) == 4, 5, "the answering receiver's events")
    assert [body.get("number") for body in bodies] == [0, 1, 2, None]
    assert bodies[-1]["event"] == "study_finished"


def test_a_delivery_never_shows_its_secret() -> None:
    delivery = Delivery("https://hooks.example.org/a", SECRET, "best_changed", lambda: None)
    assert SECRET not in repr(delivery)
