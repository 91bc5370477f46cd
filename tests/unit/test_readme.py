"""The README stays true: its commands exist and its settings are the ones the code reads."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_two_setup_commands_are_make_targets() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("run", "test"):
        assert f"make {target}" in README
        assert re.search(rf"^{target}:", makefile, re.MULTILINE)


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_settings_table_names_exactly_the_settings() -> None:
    in_code = {f"HPO_{name.upper()}" for name in Settings.model_fields}
    in_readme = set(re.findall(r"`(HPO_[A-Z_]+)`", README))
    assert in_readme == in_code
