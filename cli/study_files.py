"""Study definitions from files: JSON, or YAML (the CLI's friendlier form of the same data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def load_study_file(path: Path) -> dict[str, Any]:
    """The study definition in ``path`` (``.json``, ``.yaml`` or ``.yml``)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a study definition (a mapping)")
    return data
