"""Study definitions from files: JSON, or YAML (the CLI's friendlier form of the same data)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cli.errors import StudyFileError


def load_study_file(path: Path) -> dict[str, Any]:
    """The study definition in ``path`` (``.json``, ``.yaml`` or ``.yml``); ``StudyFileError``
    naming the file where it cannot be read as one."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise StudyFileError(f"{path}: {error}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        problem = " ".join(str(error).split())  # the parser's lines and columns, on one line
        raise StudyFileError(f"{path} is not readable JSON or YAML: {problem}") from None
    if not isinstance(data, dict):
        raise StudyFileError(f"{path} does not hold a study definition (a mapping)")
    return data
