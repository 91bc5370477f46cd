"""Registered data sets on a worker: downloaded once from the service, kept by their SHA-256.
A reference is read in the tenant of the study the worker runs for (names are per tenant).

A file is checked against the SHA-256 the service states before it is kept, and written under a
temporary name and renamed, so two worker processes fetching it at once never read half a file.

The folder holds at most ``HPO_WORKER_DATASET_CACHE_BYTES``: after each download the files used
longest ago go first (a file's modification time is its last use: a fetch of a kept file
touches it). A file used in the last ``IN_USE_S`` is never removed, whatever the total, so that
a process of the node that has just fetched it still finds it; a process reads a data set's
file once and keeps its arrays in memory (``workers/trainers/datasets.py``). A download that
fails while it is written leaves nothing; one a killed process left goes at the next download's
pass once ``IN_USE_S`` old, whatever the total.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

from client import HPOJSONClient
from service.settings import DEFAULT_DATA_DIR, DEFAULT_DATASET_CACHE_BYTES

logger = logging.getLogger(__name__)
DEFAULT_CACHE_DIR = DEFAULT_DATA_DIR / "dataset-cache"
DEFAULT_CACHE_BYTES = DEFAULT_DATASET_CACHE_BYTES
IN_USE_S = 600.0
PARTIAL_PREFIX = ".partial-"  # a download being written (or one a killed process left)


class DatasetCache:
    """Fetches registered data sets through the HTTP API into a folder of files named by hash."""

    def __init__(
        self,
        client: HPOJSONClient,
        folder: Path = DEFAULT_CACHE_DIR,
        *,
        study_id: int | None = None,
        limit_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self._client = client
        self._folder = folder
        # A worker's: a reference is one of this study's tenant's (a user's: the client's tenant's).
        self._study_id = study_id
        self._limit_bytes = limit_bytes

    def fetch(self, reference: str) -> tuple[str, str, str | None, str]:
        """``(sha256, format, label_column, local path)`` of the data set ``reference``."""
        meta = self._client.dataset(reference, self._study_id)
        sha256, file_format = str(meta["sha256"]), str(meta["format"])
        path = self._folder / f"{sha256}.{file_format}"
        if _touched(path):
            return sha256, file_format, meta.get("label_column"), str(path)
        self._download(reference, sha256, path)
        try:
            self._make_room(keep=path)
        except OSError as error:  # the download is kept and used: the folder stays over its limit
            logger.warning("data set cache: could not make room in %s: %s", self._folder, error)
        return sha256, file_format, meta.get("label_column"), str(path)

    def _make_room(self, keep: Path) -> None:
        """Remove the files used longest ago (not ``keep``, nor any used in the last
        ``IN_USE_S``, looked at again just before it goes: another process may have just fetched
        it) until the folder holds at most the limit; and any unfinished download as old."""
        kept = sorted(_files(self._folder), key=lambda entry: entry[1].st_mtime)
        total = sum(stat.st_size for _, stat in kept)
        for path, stat in kept:
            if path.name.startswith(PARTIAL_PREFIX) and not _used_lately(path):
                path.unlink(missing_ok=True)  # no process writes it any more
                total -= stat.st_size
                logger.info("data set cache: removed %s, a download left unfinished", path.name)
                continue
            if total <= self._limit_bytes:
                continue
            if path == keep or _used_lately(path):
                continue
            path.unlink(missing_ok=True)
            total -= stat.st_size
            logger.info(
                "data set cache: removed %s (%d bytes), used longest ago", path.name, stat.st_size
            )

    def _download(self, reference: str, sha256: str, path: Path) -> None:
        content = self._client.dataset_content(reference, self._study_id)
        found = hashlib.sha256(content).hexdigest()
        if found != sha256:
            raise ValueError(f"data set {reference!r} arrived with SHA-256 {found}, not {sha256}")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=PARTIAL_PREFIX)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(content)
            os.replace(temporary, path)
        except BaseException:  # a full disk, say: no half file is left to count against it
            Path(temporary).unlink(missing_ok=True)
            raise


def _files(folder: Path) -> list[tuple[Path, os.stat_result]]:
    """The folder's files (downloads under way and left by a killed process included), each with
    its ``stat``; none that went meanwhile."""
    found = []
    for path in folder.iterdir():
        try:
            found.append((path, path.stat()))
        except FileNotFoundError:
            continue
    return found


def _touched(path: Path) -> bool:
    """Mark a kept file used now (the last to go); whether it is kept. A cache the process may
    not write to keeps its files as they are."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:
        return path.exists()
    return True


def _used_lately(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < IN_USE_S
    except FileNotFoundError:
        return True  # gone already: nothing to remove
