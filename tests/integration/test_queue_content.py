"""A message the queue carries is JSON: a pickled task reaches a real worker and is refused
undecoded, so nothing in it runs (the worker accepts JSON only: service.queue_contract)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from cli.local_stack import LocalStack
from cli.processes import wait_until
from service.queue_contract import RUN_TRIAL_TASK, TRIALS_QUEUE
from tests.support.logs import log_messages

pytestmark = pytest.mark.integration


class TouchOnUnpickling:
    """Unpickling it creates ``path``: the proof that a pickle was decoded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (Path.touch, (self.path,))


def refused(stack: LocalStack) -> bool:
    assert stack.worker is not None
    return any("untrusted content" in m for m in log_messages(stack.worker.log_path))


def test_a_pickled_task_is_refused_by_the_worker_and_nothing_in_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    stack = LocalStack(f"sqlite:///{tmp_path / 'hpo.db'}", workers=1).start()
    try:
        sender = Celery(broker=stack.redis.url)
        sender.conf.accept_content = ["pickle", "json"]
        sender.send_task(
            RUN_TRIAL_TASK,
            args=[TouchOnUnpickling(marker)],
            queue=TRIALS_QUEUE,
            serializer="pickle",
        )
        wait_until(lambda: refused(stack) or marker.exists(), 60, "the worker taking the message")
        assert not marker.exists(), "the worker unpickled the message"
        assert refused(stack)
        assert stack.worker is not None and stack.worker.process.poll() is None  # still up
    finally:
        stack.stop()
