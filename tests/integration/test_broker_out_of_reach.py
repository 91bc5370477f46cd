"""A broker that takes connections and never answers (a hung Redis): the API's sending gives up
after its socket timeout instead of holding the request for ever, the trials stay leased as
unsent for the reaper to send again, and the study's lock is not held meanwhile (a stop of the
same study is answered while the sending still waits)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from api.dispatch import CeleryDispatcher
from service.settings import Settings
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A TCP server that accepts every connection and never sends a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for connection in accepted:
        connection.close()


def test_a_silent_broker_holds_neither_the_request_nor_the_study(
    silent_broker: str, database_url: str
) -> None:
    database = Database(database_url)
    settings = Settings(database_url=database_url, broker_url=silent_broker)
    tuner = Tuner(database, CeleryDispatcher(settings), TrainerCatalog.installed())
    spec = StudySpec.model_validate(
        {
            "name": f"silent-{uuid.uuid4().hex[:8]}",
            "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
            "budget": {"n_trials": 4, "max_concurrent_trials": 2},
            "trainer": {"name": "mlp", "dataset": "wine", "epochs": 1},
            "preflight": {"enabled": False},
        }
    )
    created: list[int] = []
    creating = threading.Thread(
        target=lambda: created.append(tuner.create_study(spec).study_id), daemon=True
    )
    creating.start()
    study_id = wait_for_study(tuner, spec.name)
    stopping = threading.Thread(target=tuner.stop, args=(study_id,), daemon=True)
    stopping.start()  # while the first trial's sending waits on the broker
    stopping.join(timeout=10)
    assert not stopping.is_alive(), "the stop waited for the broker"
    assert creating.is_alive(), "the sending gave up before the stop: nothing shown"
    assert tuner.study(study_id).state == "stopped"
    creating.join(timeout=120)
    assert not creating.is_alive(), "the sending never gave up"
    assert created == [study_id]
    running = [trial.trial_id for trial in tuner.study_trials(study_id) if trial.state == "running"]
    assert len(running) == 2
    with database.session() as session:
        sent = session.scalars(
            select(TrialLeaseRecord.sent).where(TrialLeaseRecord.trial_id.in_(running))
        ).all()
    assert sent == [False, False]  # leased as unsent: the reaper's to send again
    database.dispose()


def wait_for_study(tuner: Tuner, name: str) -> int:
    """The id of the study named ``name`` once a trial of it is created (it is being sent)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for view in tuner.studies():
            if view.name == name and view.counts.get("running"):
                return view.study_id
        time.sleep(0.05)
    raise AssertionError(f"study {name} started no trial")
