"""Lines written by background threads name the study and trial of the work they serve: a
worker's lease renewals, and the API's webhook deliveries (``study_id`` / ``trial_id``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from service.json_logs import LogContextFilter, set_log_context
from service.webhooks import Delivery, WebhookSender
from workers.renewals import renewed


class Lines(logging.Handler):
    """The records of one logger, with the log context added as the service's handlers add it."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.addFilter(LogContextFilter())
        self.written: list[logging.LogRecord] = []
        self.arrived = threading.Event()
        self.logger = logging.getLogger(name)

    def emit(self, record: logging.LogRecord) -> None:
        self.written.append(record)
        self.arrived.set()


@pytest.fixture
def lines(request: pytest.FixtureRequest) -> Iterator[Lines]:
    handler = Lines(request.param)
    level = handler.logger.level
    handler.logger.addHandler(handler)
    handler.logger.setLevel(logging.INFO)
    yield handler
    handler.logger.removeHandler(handler)
    handler.logger.setLevel(level)
    set_log_context()  # this thread's context as the next test expects it: none


@pytest.mark.parametrize("lines", ["workers.renewals"], indirect=True)
def test_a_failed_renewal_s_line_names_the_study_and_the_trial(lines: Lines) -> None:
    set_log_context(study_id=3, trial_id=7)

    def refused() -> None:
        raise RuntimeError("409: trial 7 is complete, not running")

    with renewed("trial 7", refused, lease_s=0.04):
        assert lines.arrived.wait(5)
    record = lines.written[0]
    assert (record.study_id, record.trial_id) == (3, 7)  # type: ignore[attr-defined]


@pytest.mark.parametrize("lines", ["service.webhooks"], indirect=True)
def test_a_webhook_s_lines_name_the_study_of_the_request_that_sent_it(lines: Lines) -> None:
    set_log_context(study_id=5, trial_id=11)
    delivery = Delivery(
        url="http://127.0.0.1:9/hook", secret="s", event="best_changed", payload=lambda: {}
    )
    set_log_context()  # the request is over; its delivery is not
    WebhookSender().enqueue(delivery)  # a loopback receiver: refused, and logged so
    assert lines.arrived.wait(5)
    record = lines.written[0]
    assert "not sent" in record.getMessage()
    assert (record.study_id, record.trial_id) == (5, 11)  # type: ignore[attr-defined]


@pytest.mark.parametrize("lines", ["service.webhooks"], indirect=True)
def test_a_webhook_that_fails_in_the_service_logs_so_naming_the_study(lines: Lines) -> None:
    set_log_context(study_id=6, trial_id=None)

    def broken_payload() -> dict[str, object]:
        raise RuntimeError("the study was deleted meanwhile")

    delivery = Delivery(
        url="https://hooks.example.org/x", secret="s", event="best_changed", payload=broken_payload
    )
    set_log_context()
    WebhookSender().enqueue(delivery)
    assert lines.arrived.wait(5)
    record = lines.written[0]
    assert record.getMessage().endswith("failed") and record.exc_info is not None
    assert record.study_id == 6  # type: ignore[attr-defined]
    assert not hasattr(record, "trial_id")
