"""The service core against a real database, the same contract on SQLite and on PostgreSQL.

Studies here have no trainer: an external program drives them through ask / report / complete,
so no queue is involved.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy
import optuna
import pytest
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import TrialState
from safetensors.numpy import save as save_tensors
from sqlalchemy import select

from service import trial_lifecycle
from service.dispatch import NoDispatcher
from service.errors import BudgetExhausted, Conflict, InvalidSpec, NotFound
from service.leases import LeaseTimes
from service.spec.study_spec import StudySpec
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord
from service.trainer_catalog import TrainerCatalog
from service.tuner import Tuner
from tests.support.dispatchers import DoNothingDispatcher
from tests.support.transactions import writing_transactions

pytestmark = pytest.mark.integration


@pytest.fixture
def tuner(database_url: str) -> Iterator[Tuner]:
    database = Database(database_url)
    yield Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    database.dispose()


def spec(n_trials: int = 6, concurrent: int = 2, **extra: object) -> StudySpec:
    return StudySpec.model_validate(
        {
            "name": f"ext-{uuid.uuid4().hex[:8]}",
            "space": {"x": {"type": "float", "low": -5, "high": 5}},
            "sampler": {"name": "random", "seed": 3},
            "budget": {"n_trials": n_trials, "max_concurrent_trials": concurrent},
            **extra,
        }
    )


def test_concurrent_asks_never_overshoot_the_budget(tuner: Tuner) -> None:
    study = tuner.create_study(spec(n_trials=10, concurrent=10))
    started: list[int] = []
    refused: list[BudgetExhausted] = []

    def ask_many() -> None:
        for _ in range(5):
            try:
                started.append(tuner.ask(study.study_id).trial_id)
            except BudgetExhausted as error:
                refused.append(error)

    threads = [threading.Thread(target=ask_many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 10 and len(set(started)) == 10
    assert len(refused) == 20
    assert tuner.study(study.study_id).counts["running"] == 10


def test_max_concurrent_trials_holds_until_one_finishes(tuner: Tuner) -> None:
    study = tuner.create_study(spec(n_trials=5, concurrent=2))
    first, _second = tuner.ask(study.study_id), tuner.ask(study.study_id)
    with pytest.raises(BudgetExhausted, match="max_concurrent_trials"):
        tuner.ask(study.study_id)
    tuner.complete(first.trial_id, TrialState.COMPLETE, 1.0, None)
    assert tuner.ask(study.study_id).number == 2


def test_the_study_completes_after_its_last_trial(tuner: Tuner) -> None:
    study = tuner.create_study(spec(n_trials=3, concurrent=3))
    trials = [tuner.ask(study.study_id) for _ in range(3)]
    for value, trial in enumerate(trials):
        assert tuner.study(study.study_id).state == "running"
        tuner.complete(trial.trial_id, TrialState.COMPLETE, float(value), None)
    final = tuner.study(study.study_id)
    assert final.state == "complete" and final.counts["complete"] == 3
    assert final.best is not None and final.best.number == 0


@contextmanager
def study_lock_held_elsewhere(tuner: Tuner, study_id: int) -> Iterator[threading.Event]:
    """The study's lock held by another thread (as by an ask in progress) until the block ends
    or 10 s pass; the event says whether the holder let it go."""
    taken, release, released = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with tuner.trials.locks.hold(study_id):
            taken.set()
            release.wait(timeout=10)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(timeout=10)
    try:
        yield released
    finally:
        release.set()
        holder.join()


ONE_RUNG = {"name": "hyperband", "min_resource": 1, "max_resource": 1}  # decides at step 1


def good_trials(tuner: Tuner, study_id: int, count: int) -> None:
    """``count`` trials that report 0.0 at step 1 and complete: a later worse report at step 1
    is pruned."""
    for _ in range(count):
        trial = tuner.ask(study_id)
        assert not tuner.report(trial.trial_id, 1, 0.0)
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.0, None)


@pytest.mark.parametrize("ending", ["complete", "pruned", "failed"])
def test_a_trial_ends_without_waiting_for_an_ask_while_the_budget_lasts(
    tuner: Tuner, ending: str
) -> None:
    """A study without a trainer, short of its trials: nothing to start and not done, so a trial's
    end does not wait for the study's lock (an ask of another client may hold it)."""
    study = tuner.create_study(spec(n_trials=6, concurrent=6, pruner=ONE_RUNG))
    trial = tuner.ask(study.study_id)
    good_trials(tuner, study.study_id, 3)
    with study_lock_held_elsewhere(tuner, study.study_id) as released:
        if ending == "pruned":
            assert tuner.report(trial.trial_id, 1, 100.0)
        elif ending == "complete":
            tuner.complete(trial.trial_id, TrialState.COMPLETE, 1.0, None)
        else:
            tuner.complete(trial.trial_id, TrialState.FAIL, None, "made to fail")
        assert not released.is_set()  # ended while the lock was held elsewhere
    assert tuner.study(study.study_id).state == "running"


def test_a_study_whose_last_trial_is_pruned_completes(tuner: Tuner) -> None:
    study = tuner.create_study(spec(n_trials=4, concurrent=4, pruner=ONE_RUNG))
    last = tuner.ask(study.study_id)
    good_trials(tuner, study.study_id, 3)
    assert tuner.study(study.study_id).state == "running"
    assert tuner.report(last.trial_id, 1, 100.0)
    assert tuner.study(study.study_id).state == "complete"


def test_a_study_whose_last_trial_s_sampling_fails_completes(
    tuner: Tuner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Optuna's path the trial is written before its parameters are chosen: when the sampler
    then fails, the trial is failed, and where it was the budget's last the study is done."""
    study = tuner.create_study(spec(n_trials=2, concurrent=2))
    first = tuner.ask(study.study_id)
    tuner.complete(first.trial_id, TrialState.COMPLETE, 1.0, None)

    def failing(optuna_study: optuna.Study, space: Any) -> optuna.Trial:
        optuna_study.ask()  # the trial is written, then its sampling fails
        raise RuntimeError("the sampler failed")

    monkeypatch.setattr(trial_lifecycle, "mirrors", lambda spec: False)  # Optuna's own path
    monkeypatch.setattr(trial_lifecycle, "suggest", failing)
    with pytest.raises(RuntimeError, match="the sampler failed"):
        tuner.ask(study.study_id)
    final = tuner.study(study.study_id)
    assert final.counts["fail"] == 1 and final.counts["running"] == 0
    assert final.state == "complete"


def test_hyperband_prunes_a_trial_far_behind_the_others(tuner: Tuner) -> None:
    study = tuner.create_study(
        spec(
            n_trials=40,
            concurrent=40,
            pruner={"name": "hyperband", "min_resource": 1, "max_resource": 9},
        )
    )
    decisions = []
    for index in range(30):
        trial = tuner.ask(study.study_id)
        bad = index % 3 == 0
        for step in range(1, 10):
            if tuner.report(trial.trial_id, step, 10.0 if bad else 1.0 / step):
                decisions.append((bad, step))
                break
        else:
            tuner.complete(trial.trial_id, TrialState.COMPLETE, 1.0 / 9, None)
    assert decisions and all(bad for bad, _ in decisions)
    assert any(step < 9 for _, step in decisions)


def test_a_pruned_trial_is_finished_and_its_confirmation_is_harmless(tuner: Tuner) -> None:
    study = tuner.create_study(
        spec(
            n_trials=60,
            concurrent=60,
            pruner={"name": "hyperband", "min_resource": 1, "max_resource": 3},
        )
    )
    for _ in range(20):
        trial = tuner.ask(study.study_id)
        for step in (1, 2, 3):
            tuner.report(trial.trial_id, step, 0.1)
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.1, None)
    for _ in range(20):
        bad = tuner.ask(study.study_id)
        if tuner.report(bad.trial_id, 1, 100.0):
            break
    else:
        pytest.fail("a trial 1000x worse than every other was never pruned")
    # The prune's answer lost, the report sent again (a client's retry): the same answer, where
    # it was "trial N is pruned, not running" (a program's `if report(...): break` crashed).
    again = tuner.report_answer(bad.trial_id, 1, 100.0)
    assert (again.prune, again.next_decision_step) == (True, None)
    confirmed = tuner.complete(bad.trial_id, TrialState.PRUNED, None, None)
    assert confirmed.state == "pruned" and confirmed.value == 100.0
    with pytest.raises(Conflict):
        tuner.report(bad.trial_id, 2, 1.0)
    with pytest.raises(Conflict):  # another value at the pruned step: not the same report
        tuner.report(bad.trial_id, 1, 99.0)
    with pytest.raises(Conflict):
        tuner.complete(bad.trial_id, TrialState.COMPLETE, 1.0, None)


def test_a_failed_trial_keeps_its_reason(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.complete(trial.trial_id, TrialState.FAIL, None, "CUDA out of memory")
    [view] = tuner.study_trials(study.study_id)
    assert view.state == "fail" and view.fail_reason == "CUDA out of memory"


def test_completing_twice_with_the_same_value_is_harmless_and_another_value_conflicts(
    tuner: Tuner,
) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None)
    assert tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None).value == 0.5
    with pytest.raises(Conflict):
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.7, None)


def test_a_complete_trial_needs_a_finite_value(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    with pytest.raises(InvalidSpec):
        tuner.complete(trial.trial_id, TrialState.COMPLETE, None, None)
    with pytest.raises(InvalidSpec):
        tuner.report(trial.trial_id, 1, float("nan"))


def test_a_stopped_study_starts_nothing_more(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    running = tuner.ask(study.study_id)
    assert tuner.stop(study.study_id).state == "stopped"
    with pytest.raises(BudgetExhausted, match="stopped"):
        tuner.ask(study.study_id)
    tuner.complete(running.trial_id, TrialState.COMPLETE, 2.0, None)
    assert tuner.best(study.study_id).value == 2.0


def test_a_paused_study_can_be_stopped_and_then_not_resumed(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    assert tuner.pause(study.study_id).state == "paused"
    assert tuner.stop(study.study_id).state == "stopped"
    with pytest.raises(Conflict, match="cannot be resumed"):
        tuner.resume(study.study_id)
    with pytest.raises(BudgetExhausted, match="stopped"):
        tuner.ask(study.study_id)


def test_a_repeated_completion_whose_value_is_the_metric_s_figure_is_answered_as_before(
    tuner: Tuner,
) -> None:
    study = tuner.create_study(spec(metric="accuracy", direction="maximize"))
    trial = tuner.ask(study.study_id)
    figures = {"accuracy": 0.9, "loss": 0.3}
    first = tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.3, None, figures=figures)
    assert first.value == 0.9  # the study's metric, not the value sent beside it
    again = tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.3, None, figures=figures)
    assert again.value == 0.9 and again.state == "complete"
    with pytest.raises(Conflict, match="already complete"):
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.3, None, figures={"accuracy": 0.5})


def test_ending_a_failed_trial_again_says_it_failed_in_words(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    trial = tuner.ask(study.study_id)
    tuner.complete(trial.trial_id, TrialState.FAIL, None, "out of memory")
    with pytest.raises(
        Conflict, match=rf"trial {trial.trial_id} is already failed \(out of memory\)$"
    ):
        tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.3, None)


def test_unknown_ids_and_duplicate_names(tuner: Tuner) -> None:
    with pytest.raises(NotFound):
        tuner.study(987654)
    with pytest.raises(NotFound):
        tuner.report(987654, 1, 1.0)
    first = spec()
    tuner.create_study(first)
    with pytest.raises(Conflict, match="already exists"):
        tuner.create_study(first)


def run_asked_trial(tuner: Tuner, study_id: int, tenant: str, value: float) -> int:
    """Ask, report and complete one trial as ``tenant``; its id."""
    trial = tuner.ask(study_id, tenant)
    tuner.report(trial.trial_id, 1, value + 1, trial.lease, tenant)
    tuner.complete(trial.trial_id, TrialState.COMPLETE, value, None, trial.lease, tenant)
    return trial.trial_id


def test_two_tenants_each_run_their_own_study_of_one_name(tuner: Tuner, database_url: str) -> None:
    both = spec(n_trials=3, concurrent=1, pruner={"name": "hyperband", "max_resource": 9})
    ids = {tenant: tuner.create_study(both, tenant).study_id for tenant in ("a", "default")}
    trials = {"a": run_asked_trial(tuner, ids["a"], "a", 0.2)}
    trials["default"] = run_asked_trial(tuner, ids["default"], "default", 0.7)
    for tenant, study_id in ids.items():
        assert tuner.study(study_id, tenant).name == both.name
        assert [view.study_id for view in tuner.studies(tenant)] == [study_id]
        assert tuner.best(study_id, tenant).trial_id == trials[tenant]
        assert [t.trial_id for t in tuner.study_trials(study_id, tenant)] == [trials[tenant]]
        assert [t.trial_id for t in tuner.pareto(study_id, tenant).trials] == [trials[tenant]]
    with pytest.raises(Conflict, match="already exists"):
        tuner.create_study(both, "a")
    assert optuna.load_study(study_name=both.name, storage=database_url).best_value == 0.7
    assert optuna.load_study(study_name=f"a/{both.name}", storage=database_url).best_value == 0.2

    tuner.delete(ids["a"], "a")
    with pytest.raises(NotFound):
        tuner.study(ids["a"], "a")
    assert tuner.best(ids["default"]).value == 0.7
    assert run_asked_trial(tuner, ids["default"], "default", 0.1) in {
        t.trial_id for t in tuner.study_trials(ids["default"])
    }
    again = tuner.create_study(both, "a")  # its name is free again
    assert tuner.study(again.study_id, "a").counts["complete"] == 0


def test_best_waits_for_a_complete_trial(tuner: Tuner) -> None:
    study = tuner.create_study(spec())
    tuner.ask(study.study_id)
    with pytest.raises(NotFound, match="no complete trial"):
        tuner.best(study.study_id)


def test_optuna_sees_what_the_service_wrote(tuner: Tuner, database_url: str) -> None:
    study = tuner.create_study(spec(n_trials=4, concurrent=4, pruner={"name": "none"}))
    for value in (3.0, 1.0, 2.0):
        trial = tuner.ask(study.study_id)
        tuner.report(trial.trial_id, 1, value + 1)
        tuner.complete(trial.trial_id, TrialState.COMPLETE, value, None)
    loaded = optuna.load_study(study_name=study.name, storage=database_url)
    assert [t.value for t in loaded.trials] == [3.0, 1.0, 2.0]
    assert loaded.best_value == 1.0
    assert loaded.best_params == tuner.best(study.study_id).params
    assert loaded.trials[1].intermediate_values == {1: 2.0}


def test_same_seed_and_history_give_the_same_suggestions(database_url: str) -> None:
    def run() -> list[float]:
        database = Database(database_url)
        tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
        study = tuner.create_study(
            spec(
                n_trials=5, concurrent=1, sampler={"name": "tpe", "seed": 7, "n_startup_trials": 2}
            )
        )
        xs = []
        for _ in range(5):
            trial = tuner.ask(study.study_id)
            xs.append(trial.params["x"])
            tuner.complete(trial.trial_id, TrialState.COMPLETE, trial.params["x"] ** 2, None)
        database.dispose()
        return xs

    first, second = run(), run()
    assert first == second
    assert len(set(first)) == 5


LEASE_TTL_S = 30.0


@pytest.fixture
def short_leases(database_url: str) -> Iterator[Tuner]:
    """Leases of 30 s; the tests ask the reaper about later moments instead of waiting. A
    trainer's trials are taken by the dispatcher and never claimed (no worker runs)."""
    database = Database(database_url)
    times = LeaseTimes(ttl_s=LEASE_TTL_S, dispatch_timeout_s=LEASE_TTL_S)
    yield Tuner(database, DoNothingDispatcher(), TrainerCatalog.installed(), times)
    database.dispose()


def later(seconds: float, since: datetime | None = None) -> datetime:
    return (since or datetime.now(UTC)) + timedelta(seconds=seconds)


def test_an_asker_that_goes_silent_loses_its_trial_and_frees_the_slot(short_leases: Tuner) -> None:
    study = short_leases.create_study(spec(n_trials=3, concurrent=1))
    silent = short_leases.ask(study.study_id)
    assert silent.lease is not None
    assert short_leases.expire_leases() == []  # not yet past its time
    assert short_leases.expire_leases(later(LEASE_TTL_S - 5)) == []
    assert short_leases.expire_leases(later(LEASE_TTL_S + 1)) == [silent.trial_id]
    [view] = short_leases.study_trials(study.study_id)
    assert view.state == "fail" and view.fail_reason == (
        f"lease expired: no report or heartbeat for {LEASE_TTL_S:g} s (the program that asked "
        "for it lost, or the API out of its reach)"  # no worker ran it
    )
    assert view.retried_by is None  # no trainer: an external program asks again itself
    with pytest.raises(Conflict, match=r"is failed \(lease expired: .*\), not running"):
        short_leases.report(silent.trial_id, 1, 0.5, silent.lease)
    with pytest.raises(Conflict, match=r"is already failed \(lease expired: .*\)"):
        short_leases.complete(silent.trial_id, TrialState.COMPLETE, 0.5, None, silent.lease)
    assert short_leases.ask(study.study_id).number == 1


def test_reports_renew_the_lease(short_leases: Tuner) -> None:
    study = short_leases.create_study(spec(pruner={"name": "none"}))
    trial = short_leases.ask(study.study_id)
    held_until = later(LEASE_TTL_S)  # the lease ends by then unless renewed
    for step in range(1, 4):
        time.sleep(0.2)
        renewed_at = datetime.now(UTC)
        short_leases.report(trial.trial_id, step, 1.0, trial.lease)
        # Past the lease's end before this report, short of its end after it.
        between = held_until + (renewed_at + timedelta(seconds=LEASE_TTL_S) - held_until) / 2
        assert short_leases.expire_leases(between) == []
        held_until = later(LEASE_TTL_S)
    assert short_leases.expire_leases(later(LEASE_TTL_S + 1)) == [trial.trial_id]


def test_a_stale_or_foreign_lease_token_is_refused(short_leases: Tuner) -> None:
    study = short_leases.create_study(spec(pruner={"name": "none"}))
    trial = short_leases.ask(study.study_id)
    with pytest.raises(Conflict, match="taken away"):
        short_leases.report(trial.trial_id, 1, 1.0, "not-the-lease")
    with pytest.raises(Conflict, match="taken away"):
        short_leases.complete(trial.trial_id, TrialState.COMPLETE, 1.0, None, "not-the-lease")
    assert short_leases.study_trials(study.study_id)[0].state == "running"


def test_a_second_holder_cannot_claim_a_live_lease(tuner: Tuner) -> None:
    study = tuner.create_study(spec(pruner={"name": "none"}))
    trial = tuner.ask(study.study_id)
    with pytest.raises(Conflict, match="already held"):
        tuner.claim(trial.trial_id, "another-worker:1:task")
    tuner.complete(trial.trial_id, TrialState.COMPLETE, 1.0, None, trial.lease)
    with pytest.raises(Conflict, match="complete"):
        tuner.claim(trial.trial_id, "late-duplicate:2:task")


def test_a_running_trial_left_without_a_lease_is_failed_by_the_reaper(
    tuner: Tuner, database_url: str
) -> None:
    """A trial whose creation was cut short (Optuna created it, its lease was never written)."""
    study = tuner.create_study(spec(n_trials=2, concurrent=1))
    orphan = optuna.load_study(study_name=study.name, storage=database_url).ask()
    assert tuner.study(study.study_id).counts["running"] == 1
    tuner.expire_leases()
    [view] = tuner.study_trials(study.study_id)
    assert view.trial_id == orphan._trial_id and view.state == "fail"
    assert "cut short" in (view.fail_reason or "")
    assert tuner.ask(study.study_id).number == 1  # its slot is free again


@pytest.mark.parametrize("pruner", [{"name": "none"}, {"name": "hyperband", "max_resource": 9}])
def test_a_report_or_a_batch_of_them_is_one_writing_transaction_and_is_read_back(
    database_url: str, pruner: dict[str, Any]
) -> None:
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    try:
        study = tuner.create_study(spec(pruner=pruner))
        trial = tuner.ask(study.study_id)
        engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
        for step in (1, 2):
            with writing_transactions(engines) as counted:
                assert tuner.report(trial.trial_id, step, 0.5 / step, trial.lease) is False
            assert len(counted) == 1
        tuner.report(trial.trial_id, 2, 0.2, trial.lease)  # the same step again: replaced
        stored = tuner.study_trials(study.study_id)[0]
        assert stored.intermediate_values == {1: 0.5, 2: 0.2}
        with writing_transactions(engines) as counted:  # a batch, its first step replaced
            answer = tuner.report_many(trial.trial_id, [(2, 0.3), (3, 0.25), (4, 0.2)], trial.lease)
        assert len(counted) == 1 and answer.prune is False
        stored = tuner.study_trials(study.study_id)[0]
        assert stored.intermediate_values == {1: 0.5, 2: 0.3, 3: 0.25, 4: 0.2}
    finally:
        database.dispose()


def test_a_pruning_report_ends_the_trial_in_its_one_writing_transaction(
    database_url: str,
) -> None:
    """The report that prunes writes its value, the trial's pruned end with that value (as
    Optuna's ``tell`` records a pruned trial) and the lease's end in one transaction."""
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    hyperband = {"name": "hyperband", "min_resource": 1, "max_resource": 3}
    try:
        study = tuner.create_study(spec(n_trials=60, concurrent=60, pruner=hyperband))
        for _ in range(20):
            trial = tuner.ask(study.study_id)
            for step in (1, 2, 3):
                tuner.report(trial.trial_id, step, 0.1, trial.lease)
            tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.1, None, trial.lease)
        engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
        for _ in range(20):
            bad = tuner.ask(study.study_id)
            with writing_transactions(engines) as counted:
                pruned = tuner.report(bad.trial_id, 1, 100.0, bad.lease)
            if pruned:
                break
            tuner.complete(bad.trial_id, TrialState.COMPLETE, 100.0, None, bad.lease)
        else:
            pytest.fail("a trial 1000x worse than every other was never pruned")
        assert len(counted) == 1
        assert tuner.trials.leases.leased_trials(study.study_id) == set()
        [stored] = [
            trial
            for trial in optuna.load_study(study_name=study.name, storage=database_url).trials
            if trial._trial_id == bad.trial_id
        ]
        assert stored.state == TrialState.PRUNED and stored.value == 100.0
        assert stored.intermediate_values == {1: 100.0} and stored.datetime_complete is not None
        with pytest.raises(Conflict, match="pruned, not running"):
            tuner.report(bad.trial_id, 2, 1.0, bad.lease)
    finally:
        database.dispose()


def stored_trial(database_url: str, study_name: str, trial_id: int) -> optuna.trial.FrozenTrial:
    """The trial as plain Optuna reads it back."""
    trials = optuna.load_study(study_name=study_name, storage=database_url).trials
    [stored] = [trial for trial in trials if trial._trial_id == trial_id]
    return stored


def test_a_failed_or_pruned_end_is_one_writing_transaction(database_url: str) -> None:
    """A worker's failed end (reason, epoch records) and its own pruned end (no value: its last
    report's), and the reaper's failing of a trial, each write the trial's end and the lease's in
    one transaction; a stranger's end changes nothing, and a second end is no end."""
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
    records: list[dict[str, float | None]] = [{"epoch": 1.0, "train_loss": 2.0}]
    try:
        study = tuner.create_study(spec(n_trials=3, concurrent=3))
        failed, pruned, reaped = (tuner.ask(study.study_id) for _ in range(3))
        tuner.report(pruned.trial_id, 1, 0.7, pruned.lease)
        tuner.report(pruned.trial_id, 2, 0.6, pruned.lease)
        with writing_transactions(engines) as counted, pytest.raises(Conflict, match="lease"):
            tuner.complete(failed.trial_id, TrialState.FAIL, None, "nan", "not-the-lease")
        assert counted == []
        with writing_transactions(engines) as counted:
            tuner.complete(
                failed.trial_id, TrialState.FAIL, None, "loss diverged", failed.lease,
                epoch_metrics=records,
            )  # fmt: skip
            tuner.complete(pruned.trial_id, TrialState.PRUNED, None, None, pruned.lease)
            assert tuner.trials.fail(reaped.trial_id, "its lease expired") is True
        assert len(counted) == 3
        assert tuner.trials.fail(reaped.trial_id, "again") is False
        assert tuner.trials.leases.leased_trials(study.study_id) == set()
        stored = stored_trial(database_url, study.name, failed.trial_id)
        assert stored.state == TrialState.FAIL and stored.values is None
        assert stored.system_attrs["hpo:fail_reason"] == "loss diverged"
        assert stored.system_attrs["hpo:epoch_metrics"] == records
        stored = stored_trial(database_url, study.name, pruned.trial_id)
        assert stored.state == TrialState.PRUNED and stored.value == 0.6
        assert stored.datetime_complete is not None
        stored = stored_trial(database_url, study.name, reaped.trial_id)
        assert stored.state == TrialState.FAIL
        assert stored.system_attrs["hpo:fail_reason"] == "its lease expired"
    finally:
        database.dispose()


def test_a_prune_on_optuna_s_general_path_and_one_before_any_report_end_the_trial(
    database_url: str,
) -> None:
    """A pruner other than Hyperband prunes through Optuna's path; the trial ends pruned with the
    report's value and its lease goes. A trial pruned before its first report has no value."""
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    threshold = {"name": "threshold", "upper": 1.0}
    try:
        study = tuner.create_study(spec(n_trials=2, concurrent=2, pruner=threshold))
        high, early = tuner.ask(study.study_id), tuner.ask(study.study_id)
        assert tuner.report(high.trial_id, 1, 0.5, high.lease) is False
        assert tuner.report(high.trial_id, 2, 5.0, high.lease) is True
        # Sent again (the answer lost): pruned again, the reports before it in the batch too.
        assert tuner.report(high.trial_id, 2, 5.0, high.lease) is True
        assert tuner.report_many(high.trial_id, [(1, 0.5), (2, 5.0)], high.lease).prune
        with pytest.raises(Conflict):  # an earlier step alone: not the report that pruned
            tuner.report(high.trial_id, 1, 0.5, high.lease)
        tuner.complete(early.trial_id, TrialState.PRUNED, None, None, early.lease)
        assert tuner.trials.leases.leased_trials(study.study_id) == set()
        stored = stored_trial(database_url, study.name, high.trial_id)
        assert stored.state == TrialState.PRUNED and stored.value == 5.0
        assert stored.intermediate_values == {1: 0.5, 2: 5.0}
        stored = stored_trial(database_url, study.name, early.trial_id)
        assert stored.state == TrialState.PRUNED and stored.values is None
    finally:
        database.dispose()


def test_a_completion_is_one_writing_transaction_and_optuna_reads_it_back(
    database_url: str,
) -> None:
    # UTC+5: Optuna stores naive UTC and reads it back as local time; so must the service.
    with local_time_zone("Etc/GMT-5"):
        completion_in_one_transaction(database_url)


def completion_in_one_transaction(database_url: str) -> None:
    database = Database(database_url)
    tuner = Tuner(database, NoDispatcher(), TrainerCatalog.installed())
    try:
        constrained = spec(
            n_trials=2, concurrent=1, constraints=[{"metric": "n_parameters", "max": 100}]
        )
        study = tuner.create_study(constrained)
        trial = tuner.ask(study.study_id)
        with pytest.raises(Conflict, match="lease"):  # another holder's completion changes nothing
            tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None, "not-the-lease")
        engines = [database.engine, database.optuna._backend.engine]  # type: ignore[attr-defined]
        records: list[dict[str, float | None]] = [{"epoch": 1.0, "validation_loss": 0.5}]
        with writing_transactions(engines) as counted:
            tuner.complete(
                trial.trial_id,
                TrialState.COMPLETE,
                0.5,
                None,
                trial.lease,
                figures={"n_parameters": 150.0},
                epoch_metrics=records,
            )
        assert len(counted) == 1
        [stored] = optuna.load_study(study_name=study.name, storage=database_url).trials
        now = datetime.now()
        assert stored.state == TrialState.COMPLETE and stored.values == [0.5]
        for moment in (stored.datetime_start, stored.datetime_complete):
            assert moment is not None and abs(now - moment) < timedelta(minutes=1)
        assert stored.system_attrs["hpo:figures"] == {"n_parameters": 150.0}
        assert stored.system_attrs["constraints:n_parameters<=100"] == 50.0
        assert stored.system_attrs["hpo:epoch_metrics"] == records
        # The lease went with it; a repeat is answered as the first, a different value refused.
        with pytest.raises(Conflict, match="complete"):
            tuner.heartbeat(trial.trial_id, trial.lease)
        assert tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None).state == "complete"
        with pytest.raises(Conflict, match="already complete"):
            tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.4, None)
    finally:
        database.dispose()


@contextmanager
def local_time_zone(name: str) -> Iterator[None]:
    """The process's local time zone is ``name`` inside the block."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


def test_a_checkpoint_is_an_optuna_artifact_of_its_trial(
    tuner: Tuner, database_url: str, tmp_path: Path
) -> None:
    study = tuner.create_study(spec(n_trials=1, concurrent=1))
    trial = tuner.ask(study.study_id)
    content = save_tensors({"w": numpy.zeros(3, dtype=numpy.float32)}, {"hpo.model": "{}"})
    engines = [tuner.checkpoints._database.engine, tuner.trials.storage._backend.engine]  # type: ignore[attr-defined]
    with writing_transactions(engines) as counted:
        tuner.put_checkpoint(trial.trial_id, content, trial.lease)
    assert len(counted) == 1  # the lease's renewal, the bytes and their trial attribute
    tuner.put_checkpoint(trial.trial_id, content, trial.lease)  # the same bytes: nothing changes
    [stored] = optuna.load_study(study_name=study.name, storage=database_url).trials
    [meta] = optuna.artifacts.get_all_artifact_meta(stored, storage=tuner.trials.storage)
    assert meta.mimetype == "application/octet-stream"
    target = tmp_path / "best.safetensors"
    optuna.artifacts.download_artifact(
        artifact_store=tuner.checkpoints.artifacts,
        file_path=str(target),
        artifact_id=meta.artifact_id,
    )
    assert target.read_bytes() == content == tuner.checkpoint(trial.trial_id)


def test_new_bytes_replace_a_checkpoint_in_one_transaction_and_a_refusal_changes_nothing(
    tuner: Tuner, database_url: str
) -> None:
    study = tuner.create_study(spec(n_trials=1, concurrent=1))
    trial = tuner.ask(study.study_id)
    first = save_tensors({"w": numpy.zeros(3, dtype=numpy.float32)}, {"hpo.model": "{}"})
    second = save_tensors({"w": numpy.ones(3, dtype=numpy.float32)}, {"hpo.model": "{}"})
    tuner.put_checkpoint(trial.trial_id, first, trial.lease)
    [(first_id,)] = [
        (key.removeprefix("artifacts:"),)
        for key in tuner.trials.storage.get_trial(trial.trial_id).system_attrs
        if key.startswith("artifacts:")
    ]
    engines = [tuner.checkpoints._database.engine, tuner.trials.storage._backend.engine]  # type: ignore[attr-defined]
    with writing_transactions(engines) as counted:
        tuner.put_checkpoint(trial.trial_id, second, trial.lease)
    assert len(counted) == 1  # the renewal, the new bytes and the earlier ones' removal
    assert tuner.checkpoint(trial.trial_id) == second
    with pytest.raises(ArtifactNotFound):  # the replaced bytes are gone
        tuner.checkpoints.artifacts.open_reader(first_id)
    renewed_until = lease_expiry(tuner, trial.trial_id)
    with pytest.raises(Conflict, match="lease"):
        tuner.put_checkpoint(trial.trial_id, first, "not-the-lease")
    with pytest.raises(InvalidSpec, match="not a checkpoint"):
        tuner.put_checkpoint(trial.trial_id, b"not safetensors", trial.lease)
    assert lease_expiry(tuner, trial.trial_id) == renewed_until  # refusals renew nothing
    tuner.complete(trial.trial_id, TrialState.COMPLETE, 0.5, None, trial.lease)
    with pytest.raises(Conflict, match="complete, not running"):
        tuner.put_checkpoint(trial.trial_id, first, trial.lease)
    assert tuner.checkpoint(trial.trial_id) == second
    # The trial links to its one checkpoint only: the replaced one's link went with its bytes.
    [stored] = optuna.load_study(study_name=study.name, storage=database_url).trials
    [meta] = optuna.artifacts.get_all_artifact_meta(stored, storage=tuner.trials.storage)
    with tuner.checkpoints.artifacts.open_reader(meta.artifact_id) as reader:
        assert reader.read() == second


def lease_expiry(tuner: Tuner, trial_id: int) -> object:
    with tuner.checkpoints._database.session() as session:
        return session.scalar(
            select(TrialLeaseRecord.expires_at).where(TrialLeaseRecord.trial_id == trial_id)
        )


def trainer_spec(n_trials: int, **extra: object) -> StudySpec:
    """A study of the built-in trainer, one trial at a time, without pre-flight checks."""
    return spec(
        n_trials=n_trials,
        concurrent=1,
        space={"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}},
        trainer={"name": "mlp", "dataset": "wine", "epochs": 1},
        preflight={"enabled": False},
        **extra,
    )


def test_a_retry_runs_its_trials_parameters_while_enqueued_ones_wait(short_leases: Tuner) -> None:
    study = short_leases.create_study(trainer_spec(4, enqueue=[{"lr": 1e-3}, {"lr": 2e-3}]))
    [lost] = [t for t in short_leases.study_trials(study.study_id) if t.state == "running"]
    assert lost.params == {"lr": 1e-3}  # sent, never claimed; the other enqueued one waits
    assert short_leases.expire_leases(later(LEASE_TTL_S + 1)) == [lost.trial_id]
    trials = {trial.trial_id: trial for trial in short_leases.study_trials(study.study_id)}
    retry = trials[trials[lost.trial_id].retried_by]
    assert (retry.params, retry.seed, retry.state) == (lost.params, lost.seed, "running")
    assert (trials[lost.trial_id].fail_reason or "").endswith(
        f"; run again as trial_id {retry.trial_id}"
    )
    waiting_trials = short_leases.trials.storage.get_all_trials(
        study.study_id, states=(TrialState.WAITING,)
    )
    assert [t.system_attrs["fixed_params"] for t in waiting_trials] == [{"lr": 2e-3}]


def test_a_trial_lost_while_the_study_is_paused_is_replaced_on_resume(short_leases: Tuner) -> None:
    tuner = short_leases
    study = tuner.create_study(trainer_spec(1))
    [lost] = tuner.study_trials(study.study_id)
    tuner.pause(study.study_id)
    assert tuner.expire_leases(later(LEASE_TTL_S + 1)) == [lost.trial_id]
    [failed] = tuner.study_trials(study.study_id)
    assert failed.state == "fail"  # no retry
    assert (failed.fail_reason or "").endswith(
        "; a fresh trial takes its place when the study resumes"
    )
    resumed = tuner.resume(study.study_id)  # the lost trial does not count against the budget
    assert resumed.state == "running"
    trials = tuner.study_trials(study.study_id)
    assert [trial.state for trial in trials] == ["fail", "running"]


def test_a_trial_sent_before_a_stop_is_not_started_by_a_worker_s_claim(tuner: Tuner) -> None:
    """A stopped study's 1,024 trials waiting in the queue all ran (219 complete, 805 pruned),
    and another study's waited 70 s behind them."""
    study = tuner.create_study(trainer_spec(3))
    [sent] = tuner.study_trials(study.study_id)  # sent, not claimed yet
    tuner.stop(study.study_id)
    with pytest.raises(Conflict, match="not started: the study was stopped before a worker"):
        tuner.claim(sent.trial_id, "worker:1:task")
    [failed] = tuner.study_trials(study.study_id)
    assert failed.state == "fail"
    assert failed.fail_reason == "not started: the study was stopped before a worker claimed it"


def test_a_trial_sent_before_a_pause_is_not_started_and_is_replaced_on_resume(
    tuner: Tuner,
) -> None:
    study = tuner.create_study(trainer_spec(1))
    [sent] = tuner.study_trials(study.study_id)
    tuner.pause(study.study_id)
    with pytest.raises(Conflict, match="not started: the study was paused"):
        tuner.claim(sent.trial_id, "worker:1:task")
    [failed] = tuner.study_trials(study.study_id)
    assert failed.state == "fail"
    assert (failed.fail_reason or "").endswith("; a fresh trial takes its place when it resumes")
    tuner.resume(study.study_id)  # the trial not started does not count against the budget
    fresh = tuner.study_trials(study.study_id)[1]
    assert fresh.state == "running"
    assert tuner.claim(fresh.trial_id, "worker:1:task").lease  # a running study's: claimed


def test_a_trial_lost_with_its_retries_spent_says_so(short_leases: Tuner) -> None:
    """Its reason was the same as a retried one's: nothing said it would not run again."""
    tuner = short_leases
    once = trainer_spec(1)
    budget = once.budget.model_copy(update={"max_retries": 1})
    study = tuner.create_study(once.model_copy(update={"budget": budget}))
    tuner.expire_leases(later(LEASE_TTL_S + 1))  # the first run lost: run again
    [retry] = [t for t in tuner.study_trials(study.study_id) if t.state == "running"]
    tuner.expire_leases(later(2 * LEASE_TTL_S + 2))  # the retry lost too: none is left
    last = {t.trial_id: t for t in tuner.study_trials(study.study_id)}[retry.trial_id]
    assert last.state == "fail"
    assert (last.fail_reason or "").endswith("; not run again: budget.max_retries (1) reached")


@pytest.mark.parametrize(
    "sampler",
    [{"name": "random", "seed": 3}, {"name": "cmaes", "seed": 3}],
    ids=["sampled-on-the-mirror", "sampled-through-optuna"],
)
def test_an_ask_repeated_with_its_idempotency_key_gets_its_running_trial_again(
    tuner: Tuner, sampler: dict[str, object]
) -> None:
    study = tuner.create_study(spec(n_trials=6, concurrent=3, sampler=sampler))
    first = tuner.ask(study.study_id, ask_key="ask-1")
    assert tuner.ask(study.study_id, ask_key="ask-1") == first  # parameters, seed and lease
    other = tuner.ask(study.study_id, ask_key="ask-2")
    unkeyed = tuner.ask(study.study_id)
    assert len({first.trial_id, other.trial_id, unkeyed.trial_id}) == 3
    assert tuner.ask(study.study_id, ask_key="ask-2") == other  # every slot taken: no matter
    tuner.complete(first.trial_id, TrialState.COMPLETE, 0.5, None, first.lease)
    again = tuner.ask(study.study_id, ask_key="ask-1")  # its trial ended: the key starts anew
    assert again.trial_id not in (first.trial_id, other.trial_id, unkeyed.trial_id)
    elsewhere = tuner.create_study(spec(n_trials=2, concurrent=1))
    assert tuner.ask(elsewhere.study_id, ask_key="ask-2").study_id == elsewhere.study_id
    assert [trial.state for trial in tuner.study_trials(study.study_id)].count("running") == 3
