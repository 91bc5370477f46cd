"""A study's state moves only from the states each change expects, so a change another request
made meanwhile is not overwritten: a late pre-flight outcome or refill does not restart or
complete a stopped study, and ``study_finished`` is sent once. Both databases."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from cli.processes import wait_until
from service import webhooks
from service.dispatch import NoDispatcher
from service.errors import Conflict
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.study_store import StudyState
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.integration.test_webhooks import SECRET, Receiver, receiver
from tests.support.threads import at_once

pytestmark = pytest.mark.integration
__all__ = ["receiver"]  # the webhook tests' receiver, shared as a fixture


@pytest.fixture
def tuner(database_url: str) -> Iterator[Tuner]:
    database = Database(database_url)
    webhooks.configure_webhooks(allow_private=True)  # the receiver listens on loopback
    yield Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    webhooks.configure_webhooks(allow_private=False)
    database.dispose()


def spec(**extra: object) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"states-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
            "budget": {"n_trials": 1},
            **extra,
        }
    )


def test_late_changes_do_not_overwrite_a_stop(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    tuner.pause(study.study_id)
    stopped = tuner.stop(study.study_id)
    store = tuner.trials._store
    # What a pre-flight outcome and a refill that read the study before the stop would write:
    assert not store.set_state(study.study_id, StudyState.RUNNING, when=[StudyState.PAUSED])
    assert not store.set_state(study.study_id, StudyState.COMPLETE, when=[StudyState.RUNNING])
    after = tuner.study(study.study_id)
    assert after.state == "stopped"
    assert after.finished_at == stopped.finished_at
    for change in (tuner.resume, tuner.pause):
        with pytest.raises(Conflict, match="a stopped study cannot be"):
            change(study.study_id)


def test_a_stop_waits_for_a_refill_in_progress(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    stopping = threading.Thread(target=tuner.stop, args=(study.study_id,))
    with tuner.trials.locks.hold(study.study_id):  # a refill holds the study's lock
        stopping.start()
        time.sleep(0.3)
        assert stopping.is_alive()
        assert tuner.study(study.study_id).state == "running"
    stopping.join(timeout=30)
    assert tuner.study(study.study_id).state == "stopped"


def test_study_finished_is_sent_once_when_a_stop_and_the_studys_end_meet(
    tuner: Tuner, receiver: tuple[Receiver, str]
) -> None:
    state, url = receiver
    hook = {"url": url, "secret": SECRET, "events": ["study_finished"]}
    studies = [tuner.create_study(spec(webhook=hook)).study_id for _ in range(8)]
    for study_id in studies:  # a user's stop, and a refill that found the study done, at once
        at_once(
            lambda s=study_id: tuner.stop(s), lambda s=study_id: tuner.trials._complete_study(s)
        )
    wait_until(lambda: all(state.events(study_id) for study_id in studies), 30, "study_finished")
    time.sleep(1)  # and no second one
    for study_id in studies:
        [post] = state.events(study_id)
        assert post["body"]["state"] == tuner.study(study_id).state  # the end that won
