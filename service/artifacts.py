"""Trials' best checkpoints, kept as Optuna's artifacts in a store on the study database.

``DatabaseArtifactStore`` implements Optuna's ``ArtifactStore`` protocol on the service's
``hpo_artifacts`` table, so ``optuna.artifacts.upload_artifact`` / ``download_artifact`` work on it
and each checkpoint is linked to its trial as Optuna's ``artifacts:<id>`` trial attribute. An
upload writes what ``upload_artifact`` writes (the bytes, and the attribute holding its
``ArtifactMeta`` as JSON) in one transaction, where ``upload_artifact`` takes one for each and
reads the whole trial first. The
database (rather than a directory) holds the bytes so that every API process, on any host, serves
them, on SQLite and PostgreSQL alike; the same table row also names the study, so deleting a study
deletes its checkpoints.

A checkpoint is a safetensors file whose metadata carries ``hpo.model`` (a JSON string: what is
needed to rebuild the model). It is checked on upload and never unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import uuid
from dataclasses import asdict
from typing import BinaryIO

from optuna.artifacts import ArtifactMeta
from optuna.artifacts.exceptions import ArtifactNotFound
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.errors import InvalidSpec, NotFound
from service.storage.database import Database
from service.storage.optuna_rows import OptunaTrialRows
from service.storage.tables import ArtifactRecord

CHECKPOINT_KIND = "checkpoint"
ARTIFACTS_ATTR_PREFIX = "artifacts:"  # where Optuna's upload_artifact links an artifact to a trial
MODEL_METADATA_KEY = "hpo.model"
CHECKPOINT_MIMETYPE = "application/octet-stream"
MAX_HEADER_BYTES = 100 * 1024 * 1024


class DatabaseArtifactStore:
    """Optuna's ``ArtifactStore`` protocol on the service's ``hpo_artifacts`` table."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes; ``ArtifactNotFound`` if there is none."""
        with self._database.session() as session:
            record = session.get(ArtifactRecord, artifact_id)
            if record is None:
                raise ArtifactNotFound(f"no artifact {artifact_id}")
            return io.BytesIO(record.content)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Keep the bytes under ``artifact_id`` (not yet linked to a study)."""
        content = content_body.read()
        record = ArtifactRecord(
            artifact_id=artifact_id, sha256=hashlib.sha256(content).hexdigest(), content=content
        )
        with self._database.session() as session:
            session.merge(record)

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact (nothing happens if there is none)."""
        with self._database.session() as session:
            session.execute(delete(ArtifactRecord).where(ArtifactRecord.artifact_id == artifact_id))


class CheckpointStore:
    """One checkpoint per trial: checked on upload, read back by trial, deleted with the study."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._trial_rows = OptunaTrialRows()
        self.artifacts = DatabaseArtifactStore(database)

    @staticmethod
    def checked(content: bytes) -> str:
        """The SHA-256 of ``content``, a checkpoint (``InvalidSpec`` on ``body`` where it is not
        one): before any transaction, so no lock waits on the hashing of a large body."""
        model_metadata(content)
        return hashlib.sha256(content).hexdigest()

    def put_in(
        self, session: Session, study_id: int, trial_id: int, content: bytes, digest: str
    ) -> str:
        """Keep ``content`` (:meth:`checked`, its SHA-256 ``digest``) as the trial's checkpoint,
        inside the caller's transaction (the one that holds the running trial and renews its
        lease); the digest.

        Sending the same bytes again changes nothing; other bytes replace the earlier checkpoint."""
        earlier = session.execute(  # their ids and digests, not their bytes
            select(ArtifactRecord.artifact_id, ArtifactRecord.sha256).where(
                ArtifactRecord.trial_id == trial_id, ArtifactRecord.kind == CHECKPOINT_KIND
            )
        ).all()
        if any(sha256 == digest for _, sha256 in earlier):
            return digest
        self._upload(session, study_id, trial_id, content, digest)
        if earlier:  # replaced: their bytes and their links from the trial go
            replaced = [artifact_id for artifact_id, _ in earlier]
            session.execute(delete(ArtifactRecord).where(ArtifactRecord.artifact_id.in_(replaced)))
            links = [ARTIFACTS_ATTR_PREFIX + artifact_id for artifact_id in replaced]
            self._trial_rows.delete_system_attrs(session, trial_id, links)
        return digest

    def get(self, trial_id: int) -> bytes:
        """The trial's checkpoint; ``NotFound`` if it has none."""
        records = self._records(trial_id)
        if not records:
            raise NotFound(f"trial {trial_id} has no checkpoint", field="trial_id")
        return records[-1].content

    def delete_study(self, study_id: int) -> None:
        """Delete every artifact of the study."""
        with self._database.session() as session:
            session.execute(delete(ArtifactRecord).where(ArtifactRecord.study_id == study_id))

    def _upload(
        self, session: Session, study_id: int, trial_id: int, content: bytes, digest: str
    ) -> str:
        """The bytes, linked to the study and trial, and the trial's ``artifacts:<id>``
        attribute, as ``optuna.artifacts.upload_artifact`` lays them out, in the caller's
        transaction."""
        artifact_id = str(uuid.uuid4())
        meta = ArtifactMeta(
            artifact_id=artifact_id,
            filename=f"trial-{trial_id}.safetensors",
            mimetype=CHECKPOINT_MIMETYPE,
            encoding=None,
        )
        session.add(
            ArtifactRecord(
                artifact_id=artifact_id,
                study_id=study_id,
                trial_id=trial_id,
                kind=CHECKPOINT_KIND,
                sha256=digest,
                content=content,
            )
        )
        attr = {ARTIFACTS_ATTR_PREFIX + artifact_id: json.dumps(asdict(meta))}
        self._trial_rows.set_system_attrs(session, trial_id, attr)
        return artifact_id

    def _records(self, trial_id: int) -> list[ArtifactRecord]:
        query = (
            select(ArtifactRecord)
            .where(ArtifactRecord.trial_id == trial_id, ArtifactRecord.kind == CHECKPOINT_KIND)
            .order_by(ArtifactRecord.created_at)
        )
        with self._database.session() as session:
            return list(session.scalars(query))


def model_metadata(content: bytes) -> dict[str, object]:
    """The ``hpo.model`` metadata of a safetensors file; ``InvalidSpec`` on ``body`` if the bytes
    are not a safetensors file that carries it. Reads the header only (JSON): nothing is run."""
    problem = _header_problem(content)
    if problem is None:
        header = json.loads(content[8 : 8 + struct.unpack("<Q", content[:8])[0]])
        metadata = header.get("__metadata__")
        raw = metadata.get(MODEL_METADATA_KEY) if isinstance(metadata, dict) else None
        try:
            model = json.loads(raw) if isinstance(raw, str) else None
        except (ValueError, RecursionError):
            model = None
        if isinstance(model, dict):
            return model
        problem = f"its metadata lacks '{MODEL_METADATA_KEY}' (a JSON object)"
    raise InvalidSpec(f"not a checkpoint: {problem}", field="body")


def _header_problem(content: bytes) -> str | None:
    if len(content) < 8:
        return "shorter than a safetensors header"
    length = struct.unpack("<Q", content[:8])[0]
    if length > min(MAX_HEADER_BYTES, len(content) - 8):
        return "its header length runs past the file"
    try:
        header = json.loads(content[8 : 8 + length])
    except (ValueError, RecursionError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    return _tensors_problem(header, len(content) - 8 - length)


def _tensors_problem(header: dict[str, object], data_bytes: int) -> str | None:
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(type(offset) is int for offset in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            return f"tensor {name!r} has no valid data_offsets"
        if offsets[1] > data_bytes:
            return f"tensor {name!r} runs past the end of the file"
    return None
