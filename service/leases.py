"""Trial leases: a running trial is held by one worker, and a lost worker's trial does not stay stuck.

A trial's lease is granted when the trial is created and waits, unclaimed, while its message is in
the queue (``dispatch_timeout_s``; again, while its message is still queued behind busy workers:
``service/lease_reaper.py``). The worker that runs it claims it and gets a token; every
report and heartbeat renews it for ``lease_ttl_s``. A second claim while the lease is live (the same
message delivered twice) is refused, and so is a report with a token that is no longer the lease's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from service.errors import Conflict, InvalidSpec
from service.storage.database import Database
from service.storage.tables import TrialLeaseRecord, as_utc

UNSENT_GRACE_S = 10.0
EXTERNAL_HOLDER = "external program (ask)"  # the holder of a trial a program asked for
LEASES = cast(Table, TrialLeaseRecord.__table__)
# A grant, a claim and its dispatch marked sent or unsent (every trial), a renewal (every report
# and heartbeat) and a release (every completion): built once, Core on the session's connection.
_GRANT = insert(LEASES)
_RENEW = (
    update(LEASES)
    .where(LEASES.c.trial_id == bindparam("lease_trial_id"))
    .values(expires_at=bindparam("new_expires_at"))
)
_RENEW_HOLDERS = _RENEW.where(LEASES.c.token == bindparam("lease_token"))
_HELD = (
    select(LEASES.c.token, LEASES.c.holder, LEASES.c.expires_at)
    .where(LEASES.c.trial_id == bindparam("lease_trial_id"))
    .with_for_update()
)
_CLAIM = (
    update(LEASES)
    .where(
        LEASES.c.trial_id == bindparam("lease_trial_id"),
        LEASES.c.token.is_not_distinct_from(bindparam("read_token")),
        # Taken over from another holder only while expired: a renewal meanwhile keeps it.
        or_(
            LEASES.c.token.is_(None),
            LEASES.c.holder == bindparam("new_holder"),
            LEASES.c.expires_at <= bindparam("claimed_at", type_=LEASES.c.expires_at.type),
        ),
    )
    .values(
        token=bindparam("new_token"),
        holder=bindparam("new_holder"),
        expires_at=bindparam("new_expires_at"),
        sent=True,  # a claimed trial's message was evidently sent
    )
)
_MARK_SENT = (
    update(LEASES)
    .where(LEASES.c.trial_id == bindparam("lease_trial_id"))
    .values(
        sent=True,
        expires_at=case(
            (LEASES.c.token.is_(None), bindparam("claim_deadline", type_=LEASES.c.expires_at.type)),
            else_=LEASES.c.expires_at,
        ),
    )
)
_MARK_UNSENT = (
    update(LEASES)
    .where(LEASES.c.trial_id == bindparam("lease_trial_id"), LEASES.c.token.is_(None))
    .values(sent=False, expires_at=bindparam("resend_at", type_=LEASES.c.expires_at.type))
)
_RELEASE = delete(LEASES).where(LEASES.c.trial_id == bindparam("lease_trial_id"))
_RELEASE_HOLDERS = _RELEASE.where(LEASES.c.token == bindparam("lease_token"))
_RELEASE_EXPIRED = _RELEASE.where(
    LEASES.c.expires_at < bindparam("expired_before", type_=LEASES.c.expires_at.type)
)


@dataclass(frozen=True)
class LeaseTimes:
    """How long a lease lasts: claimed (renewed by reports), and unclaimed (waiting in the queue)."""

    ttl_s: float
    dispatch_timeout_s: float


@dataclass(frozen=True)
class ExpiredLease:
    """A lease past its time, with what the reaper needs to retry its trial."""

    trial_id: int
    study_id: int
    attempt: int
    claimed: bool
    sent: bool
    asked: bool = False  # by a program of the user's own (an ask), not sent to the workers


class LeaseStore:
    """Grants, claims, renews, checks and expires leases in ``hpo_trial_leases``."""

    def __init__(self, database: Database, times: LeaseTimes) -> None:
        self._database = database
        self.times = times

    def grant(
        self,
        trial_id: int,
        study_id: int,
        attempt: int,
        *,
        claim: str | None = None,
        ask_key: str | None = None,
    ) -> str | None:
        """A new trial's lease: waiting for a worker, or held at once by ``claim`` (an external
        program, whose ask's ``Idempotency-Key`` is ``ask_key``)."""
        with self._database.session() as session:
            return self.grant_in(session, trial_id, study_id, attempt, claim=claim, ask_key=ask_key)

    def grant_in(
        self,
        session: Session,
        trial_id: int,
        study_id: int,
        attempt: int,
        *,
        claim: str | None,
        ask_key: str | None = None,
    ) -> str | None:
        """:meth:`grant` inside the caller's transaction (the one that creates the trial)."""
        token = secrets.token_hex(16) if claim else None
        # Unclaimed, it counts as unsent until the broker has taken its message (mark_sent):
        # whatever fails in between, the reaper sends it again.
        wait = self.times.ttl_s if claim else UNSENT_GRACE_S
        lease = {
            "trial_id": trial_id,
            "study_id": study_id,
            "token": token,
            "holder": claim,
            "expires_at": _now() + timedelta(seconds=wait),
            "attempt": attempt,
            "sent": claim is not None,
            "ask_key": ask_key,
        }
        session.connection().execute(_GRANT, lease)
        return token

    def claim(self, trial_id: int, holder: str) -> str:
        """The worker ``holder`` starts the trial; ``Conflict`` if another holds a live lease.
        The write names the token it read, and takes another holder's lease only while it is
        still expired: on SQLite the read takes no lock, and a claim, a renewal or an end
        committed in between is refused here, not overwritten."""
        with self._database.session() as session:
            lease = _held(session, trial_id)
            if lease is None:
                raise _not_running(trial_id)
            now = _now()
            if (
                lease.token is not None
                and lease.holder != holder
                and as_utc(lease.expires_at) > now
            ):
                raise Conflict(
                    f"trial {trial_id} is already held by {lease.holder}", field="trial_id"
                )
            kept = lease.token is not None and lease.holder == holder
            token = lease.token if kept else secrets.token_hex(16)
            claimed = {
                "lease_trial_id": trial_id,
                "read_token": lease.token,
                "new_token": token,
                "new_holder": holder,
                "claimed_at": now,
                "new_expires_at": now + timedelta(seconds=self.times.ttl_s),
            }
            if session.connection().execute(_CLAIM, claimed).rowcount == 0:
                raise Conflict(f"trial {trial_id} was claimed or ended meanwhile", field="trial_id")
            return str(token)

    def renew_in(self, session: Session, trial_id: int, token: str | None) -> None:
        """Extend the lease inside the caller's transaction (a report's first write);
        ``Conflict`` if ``token`` is given and is not the lease's, or there is no lease.

        One UPDATE that names the lease, not a read and then a write: on SQLite a read takes no
        lock, and a completion committed between the two (it deletes the lease) left the write
        nothing to update, which SQLAlchemy raised as ``StaleDataError``. Here no row updated is
        the refusal, read back inside the write's transaction to say which."""
        renewal = _RENEW if token is None else _RENEW_HOLDERS
        expires_at = _now() + timedelta(seconds=self.times.ttl_s)
        found = {"lease_trial_id": trial_id, "lease_token": token, "new_expires_at": expires_at}
        renewed = session.connection().execute(renewal, found)
        if renewed.rowcount == 0:
            lease = _held(session, trial_id)
            if lease is None:
                raise _not_running(trial_id)
            _check_token(trial_id, lease.token, token)
            raise _changed_meanwhile(trial_id)  # re-granted between the two statements

    def release_in(self, session: Session, trial_id: int, token: str | None) -> None:
        """Inside the caller's transaction: ``Conflict`` if ``token`` is given and is not the
        lease's, or there is no lease (the study's deletion took it: the trial is going), else
        the lease goes (the trial ends in the same transaction)."""
        release = _RELEASE if token is None else _RELEASE_HOLDERS
        found = {"lease_trial_id": trial_id, "lease_token": token}
        if session.connection().execute(release, found).rowcount == 0:
            lease = _held(session, trial_id)
            if lease is None:
                if token is not None:
                    raise _not_running(trial_id)
                return
            _check_token(trial_id, lease.token, token)
            raise _changed_meanwhile(trial_id)  # re-granted between the two statements

    def release_expired_in(self, session: Session, trial_id: int, before: datetime) -> bool:
        """Inside the caller's transaction: the lease goes if it expired before ``before``;
        whether it did (a renewal or an end since leaves it, or its absence, as it is)."""
        found = {"lease_trial_id": trial_id, "expired_before": before}
        return bool(session.connection().execute(_RELEASE_EXPIRED, found).rowcount)

    def release(self, trial_id: int) -> None:
        """The trial ended: its lease goes."""
        with self._database.session() as session:
            session.connection().execute(_RELEASE, {"lease_trial_id": trial_id})

    def release_study(self, study_id: int) -> None:
        """Every lease of a study goes (the study is deleted)."""
        with self._database.session() as session:
            session.execute(delete(TrialLeaseRecord).where(TrialLeaseRecord.study_id == study_id))

    def mark_unsent(self, trial_id: int, retry_in_s: float) -> None:
        """The broker refused the trial's message: send it again in ``retry_in_s``. A lease a
        worker has claimed meanwhile (the message went out after all) is left to its holder."""
        unsent = {"lease_trial_id": trial_id, "resend_at": _now() + timedelta(seconds=retry_in_s)}
        with self._database.session() as session:
            session.connection().execute(_MARK_UNSENT, unsent)

    def mark_sent(self, trial_id: int) -> None:
        """The trial's message is in the queue: wait for a worker to claim it. A worker may have
        claimed it already (the broker is fast): its lease keeps the claim's time. One that has
        ended already holds no lease: nothing to mark."""
        claim_wait = _now() + timedelta(seconds=self.times.dispatch_timeout_s)
        with self._database.session() as session:
            session.connection().execute(
                _MARK_SENT, {"lease_trial_id": trial_id, "claim_deadline": claim_wait}
            )

    def check_unleased_write(self, trial_id: int) -> None:
        """A user's write to a trial that sends no lease: the trial must be one a program
        asked for (or hold no lease, which the write itself refuses as it would); one that a
        worker runs or is sent to run is written to with the lease of its claim alone, so no
        value of a user's lands under a worker's training (``InvalidSpec`` on ``lease``)."""
        query = select(LEASES.c.holder).where(LEASES.c.trial_id == trial_id)
        with self._database.reading() as connection:
            lease = connection.execute(query).first()
        if lease is None or lease.holder == EXTERNAL_HOLDER:
            return
        runner = "a worker" if lease.holder else "a worker (it is queued)"  # no host names
        raise InvalidSpec(
            f"trial {trial_id} is run by {runner}: a write to it must send the lease its claim "
            "returned (stop or delete the study to end its trials)",
            field="lease",
        )

    def workers_busy(self, now: datetime) -> bool:
        """Whether a worker holds a live claim of a trial now: someone takes from the queue, so
        a trial sent and not claimed may be waiting behind its trial. (A worker busy with a study
        job alone does not count.)"""
        query = (
            select(LEASES.c.trial_id)
            .where(
                LEASES.c.token.is_not(None),
                LEASES.c.holder != EXTERNAL_HOLDER,
                LEASES.c.expires_at > now,
            )
            .limit(1)
        )
        with self._database.reading() as connection:
            return connection.execute(query).first() is not None

    def leased_trials(self, study_id: int) -> set[int]:
        """The ids of the study's trials that hold a lease."""
        query = select(TrialLeaseRecord.trial_id).where(TrialLeaseRecord.study_id == study_id)
        with self._database.session() as session:
            return set(session.scalars(query))

    def asked_with(self, study_id: int, ask_key: str) -> tuple[int, str | None] | None:
        """The trial an ask of the study with this ``Idempotency-Key`` started, and its lease
        token, while it holds its lease; ``None`` where there is none."""
        query = select(TrialLeaseRecord.trial_id, TrialLeaseRecord.token).where(
            TrialLeaseRecord.study_id == study_id, TrialLeaseRecord.ask_key == ask_key
        )
        with self._database.reading() as connection:  # on the ask's path: no ORM session
            found = connection.execute(query).first()
        return None if found is None else (found.trial_id, found.token)

    def queued(self, study_id: int) -> int:
        """How many of the study's trials wait for a worker: sent (or being sent) to the queue,
        not claimed yet."""
        query = select(func.count()).where(
            TrialLeaseRecord.study_id == study_id, TrialLeaseRecord.token.is_(None)
        )
        with self._database.reading() as connection:
            return int(connection.execute(query).scalar_one())

    def studies_holding_leases(self) -> set[int]:
        """The ids of the studies that have a trial holding a lease (one query for all)."""
        query = select(TrialLeaseRecord.study_id).distinct()
        with self._database.reading() as connection:
            return set(connection.scalars(query))

    def is_expired(self, trial_id: int, now: datetime) -> bool:
        """Whether the trial's lease is (still) past its time."""
        with self._database.session() as session:
            lease = session.get(TrialLeaseRecord, trial_id)
            return lease is not None and as_utc(lease.expires_at) < now

    def expired(self, now: datetime | None = None) -> list[ExpiredLease]:
        """Every lease past its time."""
        query = select(TrialLeaseRecord).where(TrialLeaseRecord.expires_at < (now or _now()))
        with self._database.session() as session:
            return [
                ExpiredLease(
                    lease.trial_id,
                    lease.study_id,
                    lease.attempt,
                    lease.token is not None,
                    lease.sent,
                    lease.holder == EXTERNAL_HOLDER,
                )
                for lease in session.scalars(query)
            ]


def _held(session: Session, trial_id: int) -> Any:
    """The lease's row (token, holder, expiry), held to the end of the transaction
    (PostgreSQL); ``None`` without one."""
    return session.connection().execute(_HELD, {"lease_trial_id": trial_id}).first()


def _not_running(trial_id: int) -> Conflict:
    return Conflict(f"trial {trial_id} holds no lease: it is not running", field="trial_id")


def _changed_meanwhile(trial_id: int) -> Conflict:
    return Conflict(f"the lease of trial {trial_id} changed meanwhile", field="lease")


def _check_token(trial_id: int, held_token: str | None, token: str | None) -> None:
    if token is not None and token != held_token:
        raise Conflict(
            f"the lease sent is not the one trial {trial_id} holds now (taken away from its "
            "holder, or never this trial's)",
            field="lease",
        )


def _now() -> datetime:
    return datetime.now(UTC)
