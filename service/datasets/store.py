"""Registered data sets, kept in the service's own table on the study database.

The bytes live in the database (not under a data directory) so that every API process, on any
host, serves the same data set whether the database is SQLite or PostgreSQL, and a backup of the
database holds everything a study needs. Files are small by limit (``HPO_MAX_FILE_BYTES``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import numpy as np
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, defer

from service.datasets.parsing import read_dataset
from service.errors import Conflict, InvalidSpec, NotFound
from service.storage.database import Database
from service.storage.tables import DatasetRecord, as_utc

REGISTERED_PREFIX = "registered:"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DatasetView(BaseModel):
    """What the service shows of a registered data set (never its bytes)."""

    dataset_id: int
    name: str
    format: str
    label_column: str | None
    sha256: str
    size_bytes: int
    n_rows: int
    n_features: int
    classes: list[str]
    class_counts: list[int]
    reference: str
    created_at: datetime


class DatasetStore:
    """Registers, lists and serves data sets, each tenant's apart (names are per tenant). Workers
    read a data set in the tenant of the study they run for; ``None``: any tenant."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def register(
        self, name: str, file_format: str, label_column: str | None, content: bytes, tenant: str
    ) -> DatasetView:
        """Check the file and keep it; ``InvalidSpec`` naming the problem, ``Conflict`` where the
        tenant has a data set of that name (names are per tenant, as study names are)."""
        if not NAME_PATTERN.fullmatch(name) or name.isdigit():
            problem = (
                "1 to 128 of the ASCII letters and digits, '_', '.' and '-', starting with a "
                "letter or a digit, and not digits only (an id)"
            )
            raise InvalidSpec(f"name must be {problem}", field="name")
        if file_format == "npz" and label_column is not None:
            problem = "is for csv files only: an npz file's labels are its array y"
            raise InvalidSpec(f"label_column {problem}", field="label_column")
        arrays = read_dataset(content, file_format, label_column)
        meta = {
            "n_rows": int(arrays.features.shape[0]),
            "n_features": int(arrays.features.shape[1]),
            "classes": arrays.classes,
            "class_counts": np.bincount(arrays.labels, minlength=len(arrays.classes)).tolist(),
        }
        record = DatasetRecord(
            name=name,
            tenant=tenant,
            file_format=file_format,
            label_column=label_column if file_format == "csv" else None,
            sha256=hashlib.sha256(content).hexdigest(),
            size_bytes=len(content),
            meta_json=json.dumps(meta),
            content=content,
        )
        try:
            with self._database.session() as session:
                session.add(record)
        except IntegrityError:
            raise Conflict(f"a data set named '{name}' already exists", field="name") from None
        return _view(record)

    def all(self, tenant: str | None) -> list[DatasetView]:
        """Every data set the tenant may use, newest first (their files are not read)."""
        query = select(DatasetRecord).order_by(DatasetRecord.dataset_id.desc())
        query = query.options(defer(DatasetRecord.content))
        if tenant is not None:
            query = query.where(DatasetRecord.tenant == tenant)
        with self._database.session() as session:
            return [_view(record) for record in session.scalars(query)]

    def get(self, reference: str | int, tenant: str | None) -> DatasetView:
        """A data set by id or name; ``NotFound`` if the tenant has none such."""
        return _view(self._record(reference, tenant, with_content=False))

    def content(self, reference: str | int, tenant: str | None) -> tuple[DatasetView, bytes]:
        """A data set's view and its bytes, as registered."""
        record = self._record(reference, tenant)
        return _view(record), record.content

    @contextmanager
    def deleting(self, dataset_id: int, tenant: str) -> Iterator[Session]:
        """Delete one of the tenant's data sets when the block ends, or not where it raises (a
        study found naming it). The delete comes first and holds off, until it ends, the
        record of a new study (SQLite's one writer) or that study's second look at the data set
        (a share lock on PostgreSQL: ``confirm_reference``): so the block, reading in the
        session it gets (the delete's transaction), sees every study that may name it. Keep it
        short: on SQLite every write of the process waits for it. ``NotFound`` where the tenant
        has none such."""
        query = delete(DatasetRecord).where(
            DatasetRecord.dataset_id == dataset_id, DatasetRecord.tenant == tenant
        )
        with self._database.session() as session:
            if session.connection().execute(query).rowcount != 1:
                raise NotFound(f"no data set {dataset_id}", field="reference")
            yield session

    def check_reference(self, dataset: object, tenant: str, field: str) -> DatasetView | None:
        """``InvalidSpec`` on ``field`` when ``dataset`` is ``registered:<ref>`` and names none of
        the tenant's data sets; the one it names (``None``: it names none)."""
        return self._check(dataset, tenant, field, wait_for_deletion=False)

    def confirm_reference(self, dataset: object, tenant: str, field: str) -> None:
        """``check_reference`` again, once the study that names ``dataset`` is recorded: a
        deletion of the data set under way (``deleting``) is waited for (PostgreSQL: a share
        lock on its row), so that either the deletion finds the study, or this the deletion."""
        self._check(dataset, tenant, field, wait_for_deletion=True)

    def _check(
        self, dataset: object, tenant: str, field: str, *, wait_for_deletion: bool
    ) -> DatasetView | None:
        reference = registered_reference(dataset)
        if reference is None:
            return None
        try:
            record = self._record(reference, tenant, with_content=False, locked=wait_for_deletion)
        except NotFound:
            raise InvalidSpec(f"no registered data set {reference!r}", field=field) from None
        return _view(record)

    def _record(
        self,
        reference: str | int,
        tenant: str | None,
        *,
        with_content: bool = True,
        locked: bool = False,
    ) -> DatasetRecord:
        """The record ``reference`` names; ``locked``: read ``FOR SHARE`` (SQLite: as it is)."""
        text = str(reference)
        is_id = names_an_id(text)
        column = DatasetRecord.dataset_id if is_id else DatasetRecord.name
        value: str | int = int(text) if is_id else text
        if isinstance(value, int) and value > 2**31 - 1:
            raise NotFound(f"no data set {text!r}", field="reference")
        # By name without a tenant (names are per tenant; the API refuses a worker's such read):
        # the oldest of that name, not whichever the database finds first.
        query = select(DatasetRecord).where(column == value).order_by(DatasetRecord.dataset_id)
        if tenant is not None:
            query = query.where(DatasetRecord.tenant == tenant)
        if not with_content:
            query = query.options(defer(DatasetRecord.content))
        if locked:
            query = query.with_for_update(read=True)
        with self._database.session() as session:
            record = session.scalars(query.limit(1)).first()
        if record is None:
            raise NotFound(f"no data set {text!r}", field="reference")
        return record


def registered_reference(dataset: object) -> str | None:
    """The name or id a trainer's ``dataset`` setting gives after ``registered:`` (``None``: it
    names no registered data set)."""
    if not isinstance(dataset, str) or not dataset.startswith(REGISTERED_PREFIX):
        return None
    return dataset.removeprefix(REGISTERED_PREFIX)


def names_an_id(reference: str) -> bool:
    """Whether a data set reference is an id rather than a name (names are never only digits)."""
    return reference.isascii() and reference.isdigit()  # '²'.isdigit() too, which int() refuses


def _view(record: DatasetRecord) -> DatasetView:
    meta = json.loads(record.meta_json)
    return DatasetView(
        dataset_id=record.dataset_id,
        name=record.name,
        format=record.file_format,
        label_column=record.label_column,
        sha256=record.sha256,
        size_bytes=record.size_bytes,
        reference=f"{REGISTERED_PREFIX}{record.name}",
        created_at=as_utc(record.created_at),  # SQLite gives it back without its zone
        **meta,
    )
