"""Reading the JSON log lines the service's processes write (one object a line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def log_records(path: Path) -> list[dict[str, Any]]:
    """Every line of a log file as a record; a line that is not JSON (a traceback's frame,
    a crash before logging was set up) becomes ``{"level": "RAW", "message": line}``."""
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        records.append(record if isinstance(record, dict) else {"level": "RAW", "message": line})
    return records


def log_messages(path: Path) -> list[str]:
    """The ``message`` of every record (gunicorn's access lines keep their usual text there)."""
    return [str(record.get("message", "")) for record in log_records(path)]
