"""A trial that ends while a request about it is half done: the request gets a clear refusal (or
waits for the ending, on PostgreSQL), never an error of the storage layer (the API's 500). And the
broker's fast workers: a trial claimed, or even finished, before its dispatch is marked sent keeps
what its worker did. On SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from optuna.trial import TrialState
from sqlalchemy import Engine, event, select

from service import report_path
from service.dispatch import NoDispatcher, TrialAssignment
from service.errors import Conflict
from service.leases import LeaseStore, LeaseTimes
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord
from service.trainer_catalog import TrainerCatalog
from service.trial_provenance import TrialProvenance
from service.tuner import Tuner

pytestmark = pytest.mark.integration
TTL_S, DISPATCH_TIMEOUT_S = 600, 3600
TRIAL_ID, STUDY_ID = 41, 7  # leases alone: no trial row is needed


@pytest.fixture
def tuner(database: Database) -> Tuner:
    times = LeaseTimes(ttl_s=TTL_S, dispatch_timeout_s=DISPATCH_TIMEOUT_S)
    return Tuner(database, NoDispatcher(), TrainerCatalog.installed(), times)


def spec() -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"lease-race-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": -5, "high": 5}},
            "budget": {"n_trials": 4},
            "pruner": {"name": "hyperband", "min_resource": 1, "max_resource": 9},
        }
    )


def running_trial(tuner: Tuner) -> tuple[TrialAssignment, Callable[[], object]]:
    """A running trial of a new study, and its completion (for another thread to run)."""
    trial = tuner.ask(tuner.create_study(spec()).study_id)

    def finish() -> object:
        return tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None, trial.lease)

    return trial, finish


def refused_on_sqlite(database: Database, request: Callable[[], object]) -> None:
    """A request meeting its trial's completion: refused as not running on SQLite (the
    completion committed between its check and its first write); through on PostgreSQL (the
    completion waits for it)."""
    if database.dialect == "sqlite":
        with pytest.raises(Conflict, match="not running"):
            request()
    else:
        request()


def lease_of(database: Database, trial_id: int) -> TrialLeaseRecord | None:
    with database.session() as session:
        return session.scalar(select(TrialLeaseRecord).where(TrialLeaseRecord.trial_id == trial_id))


@contextmanager
def completed_right_after(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    finish: Callable[[], object],
    *,
    check_holds_row: bool,
) -> Iterator[threading.Thread]:
    """``owner.name`` (the running-trial check of a request) runs, then ``finish`` (another
    request's completion of the same trial) starts in a thread before the check returns. On
    SQLite the check takes no lock: the completion commits there, between the check and the
    request's first write. On PostgreSQL the check holds the trial's row: the completion is still
    waiting a second later, and ends after the request's transaction."""
    check = getattr(owner, name)
    ending = threading.Thread(target=finish)

    def check_then_complete(*args: Any, **kwargs: Any) -> Any:
        found = check(*args, **kwargs)
        if ending.ident is None:
            ending.start()
            ending.join(timeout=1.0 if check_holds_row else 30)
            assert ending.is_alive() == check_holds_row
        return found

    monkeypatch.setattr(owner, name, check_then_complete)
    try:
        yield ending
    finally:
        if ending.ident is not None:
            ending.join(timeout=30)
    assert ending.ident is not None, f"{name} was not called"


def test_a_provenance_record_meeting_the_completion_is_refused_or_waits(
    tuner: Tuner, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial, finish = running_trial(tuner)
    record = TrialProvenance(seed=7, trainer="mlp")
    rows = tuner.trials._trial_rows
    holds = database.dialect == "postgresql"
    with completed_right_after(
        monkeypatch, rows, "running_number", finish, check_holds_row=holds
    ) as ending:
        refused_on_sqlite(
            database, lambda: tuner.record_provenance(trial.trial_id, record, trial.lease)
        )
    assert not ending.is_alive()
    finished = tuner.study_trials(trial.study_id)[0]
    assert finished.state == "complete"
    assert lease_of(database, trial.trial_id) is None
    expected = None if database.dialect == "sqlite" else {"seed": 7, "trainer": "mlp"}
    assert finished.provenance == expected


def test_a_report_meeting_the_completion_is_refused_or_waits(
    tuner: Tuner, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    trial, finish = running_trial(tuner)
    holds = database.dialect == "postgresql"
    with completed_right_after(
        monkeypatch, report_path, "_running_trial_steps", finish, check_holds_row=holds
    ) as ending:
        refused_on_sqlite(database, lambda: tuner.report(trial.trial_id, 1, 0.9, trial.lease))
    assert not ending.is_alive()
    stored = tuner.trials.storage.get_trial(trial.trial_id)
    assert stored.state == TrialState.COMPLETE
    assert stored.intermediate_values == ({} if database.dialect == "sqlite" else {1: 0.9})


@contextmanager
def completed_after_the_first_lease_statement(
    engine: Engine, finish: Callable[[], object]
) -> Iterator[threading.Thread]:
    """``finish`` (the trial's completion, or another claim) starts in a thread right after the
    request's first statement on the lease table, and is given a second before the request goes
    on. The renewal was a read of the lease and then a write: on SQLite a completion committed
    between the two left the write no row (``StaleDataError``, a 500). Now the renewal is one
    UPDATE, and the completion waits for the request's transaction."""
    request = threading.get_ident()
    ending = threading.Thread(target=finish)

    def after(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        first = ending.ident is None and threading.get_ident() == request
        if first and "hpo_trial_leases" in statement:
            ending.start()
            ending.join(timeout=1.0)

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield ending
    finally:
        event.remove(engine, "after_cursor_execute", after)
        if ending.ident is not None:
            ending.join(timeout=30)
    assert ending.ident is not None, "the request made no statement on the lease"


@pytest.mark.parametrize("request_kind", ["heartbeat", "provenance", "report"])
def test_a_request_whose_lease_is_renewed_before_the_completion_lands_first(
    tuner: Tuner, database: Database, request_kind: str
) -> None:
    trial, finish = running_trial(tuner)
    send = {
        "heartbeat": lambda: tuner.heartbeat(trial.trial_id, trial.lease),
        "provenance": lambda: tuner.record_provenance(
            trial.trial_id, TrialProvenance(seed=7), trial.lease
        ),
        "report": lambda: tuner.report(trial.trial_id, 1, 0.9, trial.lease),
    }[request_kind]
    with completed_after_the_first_lease_statement(database.engine, finish) as ending:
        send()
    assert not ending.is_alive()
    stored = tuner.trials.storage.get_trial(trial.trial_id)
    assert stored.state == TrialState.COMPLETE
    assert lease_of(database, trial.trial_id) is None
    if request_kind == "report":
        assert stored.intermediate_values == {1: 0.9}


def test_two_claims_of_one_trial_at_once_leave_one_holder(
    leases: LeaseStore, database: Database
) -> None:
    """The same message delivered to two workers: the second claim lands between the first's
    read of the lease and its write. One of the two holds the trial, the other is refused."""
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    leases.mark_sent(TRIAL_ID)
    outcomes: dict[str, str] = {}

    def second() -> None:
        attempt(outcomes, "second", lambda: leases.claim(TRIAL_ID, "second"))

    with completed_after_the_first_lease_statement(database.engine, second) as ending:
        attempt(outcomes, "first", lambda: leases.claim(TRIAL_ID, "first"))
    assert not ending.is_alive()
    assert_one_holder(database, outcomes, {"first", "second"})


def test_an_expired_lease_renewed_while_another_worker_claims_it_keeps_one_holder(
    leases: LeaseStore, database: Database
) -> None:
    """A slow worker's lease has just expired; another worker claims the trial (a redelivered
    message) while the first renews it. Whichever writes second is refused: never both."""
    short = LeaseStore(database, LeaseTimes(ttl_s=0.001, dispatch_timeout_s=DISPATCH_TIMEOUT_S))
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    slow_token = short.claim(TRIAL_ID, "slow-worker")
    time.sleep(0.05)  # expired
    outcomes: dict[str, str] = {}

    def renew_slow() -> str:
        renew(database, leases, slow_token)
        return slow_token

    def renew_aside() -> None:
        attempt(outcomes, "slow-worker", renew_slow)

    with completed_after_the_first_lease_statement(database.engine, renew_aside) as ending:
        attempt(outcomes, "new-worker", lambda: leases.claim(TRIAL_ID, "new-worker"))
    assert not ending.is_alive()
    assert_one_holder(database, outcomes, {"slow-worker", "new-worker"})


def attempt(outcomes: dict[str, str], holder: str, take: Callable[[], str]) -> None:
    """``holder``'s outcome: the token ``take`` answers with, or its refusal."""
    try:
        outcomes[holder] = take()
    except Conflict as refusal:
        outcomes[holder] = f"refused: {refusal.message}"


def assert_one_holder(database: Database, outcomes: dict[str, str], holders: set[str]) -> None:
    """Every one of ``holders`` got an answer (none failed otherwise), exactly one of them
    holds the lease, and the lease is that one's."""
    assert set(outcomes) == holders, outcomes
    held = [holder for holder, outcome in outcomes.items() if not outcome.startswith("refused")]
    assert len(held) == 1, outcomes
    lease = lease_of(database, TRIAL_ID)
    assert lease is not None and (lease.holder, lease.token) == (held[0], outcomes[held[0]])


def test_an_unsent_mark_leaves_a_claimed_lease_to_its_holder(
    leases: LeaseStore, database: Database
) -> None:
    """The broker took the message but its answer was lost: the trial is marked unsent after a
    worker has claimed it. The worker keeps its lease, and the reaper does not send it again."""
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    token = leases.claim(TRIAL_ID, "fast-worker")
    leases.mark_unsent(TRIAL_ID, retry_in_s=0)
    lease = lease_of(database, TRIAL_ID)
    assert lease is not None and lease.token == token and lease.sent
    assert 0 < seconds_left(lease) <= TTL_S
    assert leases.expired() == []


def renew(database: Database, leases: LeaseStore, token: str | None) -> None:
    with database.session() as session:
        leases.renew_in(session, TRIAL_ID, token)


def test_a_renewal_of_a_lease_that_is_gone_is_refused(
    leases: LeaseStore, database: Database
) -> None:
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    token = leases.claim(TRIAL_ID, "worker")
    renew(database, leases, token)
    leases.release(TRIAL_ID)  # the trial ended
    for shown in (token, None):
        with pytest.raises(Conflict, match="holds no lease"):
            renew(database, leases, shown)


def test_a_renewal_with_another_token_is_refused_and_changes_nothing(
    tuner: Tuner, database: Database
) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    before = lease_of(database, trial.trial_id)
    with pytest.raises(Conflict, match="taken away"):
        tuner.heartbeat(trial.trial_id, "another-holder")
    after = lease_of(database, trial.trial_id)
    assert before is not None and after is not None
    assert after.expires_at == before.expires_at


def seconds_left(lease: TrialLeaseRecord | None) -> float:
    assert lease is not None
    expires_at = lease.expires_at  # SQLite hands back a naive datetime: it was stored in UTC
    aware = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    return (aware - datetime.now(UTC)).total_seconds()


@pytest.fixture
def leases(database: Database) -> LeaseStore:
    return LeaseStore(database, LeaseTimes(ttl_s=TTL_S, dispatch_timeout_s=DISPATCH_TIMEOUT_S))


def test_a_trial_marked_sent_waits_for_its_claim(leases: LeaseStore, database: Database) -> None:
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    leases.mark_sent(TRIAL_ID)
    lease = lease_of(database, TRIAL_ID)
    assert lease is not None and lease.sent and lease.token is None
    assert TTL_S < seconds_left(lease) <= DISPATCH_TIMEOUT_S


def test_a_trial_claimed_before_its_dispatch_is_marked_sent_keeps_its_claims_time(
    leases: LeaseStore, database: Database
) -> None:
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    token = leases.claim(TRIAL_ID, "fast-worker")
    leases.mark_sent(TRIAL_ID)
    lease = lease_of(database, TRIAL_ID)
    assert lease is not None and lease.sent
    assert (lease.holder, lease.token) == ("fast-worker", token)
    assert 0 < seconds_left(lease) <= TTL_S


def test_a_trial_ended_before_its_dispatch_is_marked_sent_gets_no_lease_back(
    leases: LeaseStore, database: Database
) -> None:
    leases.grant(TRIAL_ID, STUDY_ID, attempt=0)
    leases.claim(TRIAL_ID, "fast-worker")
    leases.release(TRIAL_ID)
    leases.mark_sent(TRIAL_ID)
    assert lease_of(database, TRIAL_ID) is None


class RecordingDispatcher:
    """Keeps the assignments it is given (no worker runs in these tests)."""

    def __init__(self) -> None:
        self.sent: list[TrialAssignment] = []

    def dispatch(self, assignment: TrialAssignment) -> None:
        self.sent.append(assignment)


@contextmanager
def renewed_once_found_expired(engine: Engine, renew: Callable[[], object]) -> Iterator[list[str]]:
    """Run ``renew`` once, right after the reaper read the lease and found it expired (its
    re-read of one lease by trial id, under the study's lock) and before it fails the trial.
    Yields what happened in order: "renewed", then "failing" for each failing statement (the
    conditional DELETE of an expired lease) run after it."""
    happened: list[str] = []

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sql = statement.lstrip()
        reread = sql.startswith("SELECT") and "expires_at <" not in sql
        if not happened and reread and "hpo_trial_leases.trial_id =" in sql:
            happened.append("renewed")  # first: the renewal's own statements pass here too
            renew()
        elif happened and sql.startswith("DELETE FROM hpo_trial_leases") and "expires_at <" in sql:
            happened.append("failing")

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield happened
    finally:
        event.remove(engine, "after_cursor_execute", after)


def expiring_study(database: Database, trained: bool) -> tuple[Tuner, RecordingDispatcher, int]:
    """A study whose one running trial's lease (or dispatch's wait for a claim) lasts 0.3 s:
    an asked trial, or with a trainer a dispatched one. The tuner, its dispatcher, the trial."""
    times = LeaseTimes(ttl_s=0.3, dispatch_timeout_s=0.3)
    dispatcher = RecordingDispatcher()
    tuner = Tuner(database, dispatcher, TrainerCatalog.installed(), times)
    extra = {"trainer": {"name": "mlp", "dataset": "wine", "epochs": 3}} if trained else {}
    definition = {
        "name": f"expiring-{uuid.uuid4().hex[:8]}",
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 3, "max_concurrent_trials": 1},
        **extra,
    }
    study = tuner.create_study(StudySpec.model_validate(definition))
    if trained:
        [first] = dispatcher.sent
        return tuner, dispatcher, first.trial_id
    return tuner, dispatcher, tuner.ask(study.study_id).trial_id


@pytest.mark.parametrize("trained", [False, True])
def test_a_lease_renewed_after_the_reaper_found_it_expired_keeps_its_trial(
    database: Database, trained: bool
) -> None:
    """An asker's heartbeat, or a worker's late claim of a dispatched trial, lands between the
    reaper's check that the lease expired and its failing of the trial: the failing is refused,
    and the trial stays its holder's and running. A retry the reaper made for it is failed
    unrun, outside the budget, and never sent."""
    tuner, dispatcher, trial_id = expiring_study(database, trained)
    study_id = tuner.trials.study_of(trial_id)
    lease = lease_of(database, trial_id)
    assert lease is not None

    def renew() -> None:
        if trained:
            tuner.claim(trial_id, "late-worker:1:task")
        else:
            tuner.heartbeat(trial_id, lease.token)

    time.sleep(0.4)  # expired
    with renewed_once_found_expired(database.engine, renew) as happened:
        assert tuner.expire_leases() == []
    assert happened == ["renewed", "failing"]  # the failing came after, and was refused
    views = {view.trial_id: view for view in tuner.study_trials(study_id)}
    assert views[trial_id].state == "running" and lease_of(database, trial_id) is not None
    others = [view for view in views.values() if view.trial_id != trial_id]
    if trained:
        [retry] = others
        assert retry.state == "fail" and "not needed" in (retry.fail_reason or "")
        assert retry.retried_by is None and views[trial_id].retried_by is None
        assert [assignment.trial_id for assignment in dispatcher.sent] == [trial_id]
        counts = tuner.study(study_id).counts
        assert counts["running"] == 1 and counts["fail"] == 0 and counts["retried"] == 1
    else:
        assert others == []


def test_an_expired_dispatched_trial_is_failed_with_its_retry_s_mark_and_the_retry_sent(
    database: Database,
) -> None:
    """The reaper's usual way: the failing (in one transaction with the retry's mark) goes
    through; the failed trial is counted as retried, its retry in its place, and sent."""
    tuner, dispatcher, trial_id = expiring_study(database, trained=True)
    study_id = tuner.trials.study_of(trial_id)
    time.sleep(0.4)
    assert tuner.expire_leases() == [trial_id]
    views = {view.trial_id: view for view in tuner.study_trials(study_id)}
    [retry] = [view for view in views.values() if view.trial_id != trial_id]
    assert views[trial_id].state == "fail" and views[trial_id].retried_by == retry.trial_id
    assert retry.state == "running" and retry.params == views[trial_id].params
    assert [assignment.trial_id for assignment in dispatcher.sent] == [trial_id, retry.trial_id]
    counts = tuner.study(study_id).counts
    assert counts["retried"] == 1 and counts["running"] == 1 and counts["fail"] == 0


def test_a_report_sent_twice_at_once_is_recorded_once_and_both_are_answered(
    tuner: Tuner, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that timed out on a report sends it again; where the API served both at once
    (PostgreSQL), the second read the trial's latest step before the first committed and
    inserted the same step again: a unique violation, answered 500."""
    trial, _ = running_trial(tuner)
    outcomes: list[object] = []

    def again() -> None:
        try:
            outcomes.append(tuner.report(trial.trial_id, 1, 0.9, trial.lease))
        except Exception as error:  # what the API would answer it
            outcomes.append(error)

    holds = database.dialect == "postgresql"
    with completed_right_after(
        monkeypatch, report_path, "_running_trial_steps", again, check_holds_row=holds
    ):
        first = tuner.report(trial.trial_id, 1, 0.9, trial.lease)
    assert [type(outcome) for outcome in (first, *outcomes)] == [type(first)] * 2, outcomes
    assert tuner.trials.storage.get_trial(trial.trial_id).intermediate_values == {1: 0.9}
