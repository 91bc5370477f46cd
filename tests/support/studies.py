"""Waiting for a study the tests submitted to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cli.local_stack import LocalStack
from client import HPOJSONClient


def wait_for_end(
    client: HPOJSONClient,
    study_id: int,
    stack: LocalStack | None = None,
    *,
    timeout_s: float = 240,
    poll_s: float = 0.5,
    while_running: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """The study once it is no longer running, polled every ``poll_s`` (``while_running`` is
    called between polls). Past ``timeout_s`` an ``AssertionError`` with ``stack``'s logs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        study = client.study(study_id)
        if study["state"] != "running":
            return study
        while_running()
        time.sleep(poll_s)
    logs = f":\n{stack.logs()}" if stack is not None else ""
    raise AssertionError(f"study {study_id} still running after {timeout_s} s{logs}")
