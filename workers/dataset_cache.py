"""Registered data sets on a worker: downloaded once from the service, kept by their SHA-256.
A reference is read in the tenant of the study the worker runs for (names are per tenant).

A file is checked against the SHA-256 the service states before it is kept, and written under a
temporary name and renamed, so two worker processes fetching it at once never read half a file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from client import HPOJSONClient
from service.settings import DEFAULT_DATA_DIR

DEFAULT_CACHE_DIR = DEFAULT_DATA_DIR / "dataset-cache"


class DatasetCache:
    """Fetches registered data sets through the HTTP API into a folder of files named by hash."""

    def __init__(
        self,
        client: HPOJSONClient,
        folder: Path = DEFAULT_CACHE_DIR,
        *,
        study_id: int | None = None,
    ) -> None:
        self._client = client
        self._folder = folder
        # A worker's: a reference is one of this study's tenant's (a user's: the client's tenant's).
        self._study_id = study_id

    def fetch(self, reference: str) -> tuple[str, str, str | None, str]:
        """``(sha256, format, label_column, local path)`` of the data set ``reference``."""
        meta = self._client.dataset(reference, self._study_id)
        sha256, file_format = str(meta["sha256"]), str(meta["format"])
        path = self._folder / f"{sha256}.{file_format}"
        if not path.exists():
            self._download(reference, sha256, path)
        return sha256, file_format, meta.get("label_column"), str(path)

    def _download(self, reference: str, sha256: str, path: Path) -> None:
        content = self._client.dataset_content(reference, self._study_id)
        found = hashlib.sha256(content).hexdigest()
        if found != sha256:
            raise ValueError(f"data set {reference!r} arrived with SHA-256 {found}, not {sha256}")
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
