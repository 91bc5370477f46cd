"""The shape of the code: service/ is free of Flask, Celery and PyTorch; api/ and workers/ stay apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN_IN_SERVICE = {
    "flask",
    "flask_openapi3",
    "celery",
    "kombu",
    "torch",
    "api",
    "workers",
    "cli",
}


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found.setdefault(str(path.relative_to(ROOT)), set()).update(
                n.split(".")[0] for n in names
            )
    return found


def test_service_imports_no_framework() -> None:
    offenders = {
        f: roots & FORBIDDEN_IN_SERVICE
        for f, roots in imported_roots("service").items()
        if roots & FORBIDDEN_IN_SERVICE
    }
    assert offenders == {}


def test_api_and_workers_never_import_each_other() -> None:
    api = {f: r for f, r in imported_roots("api").items() if "workers" in r}
    workers = {f: r for f, r in imported_roots("workers").items() if "api" in r}
    assert api == {} and workers == {}


def test_import_linter_contracts_hold() -> None:
    """The same rules, followed through indirect imports too, by import-linter."""
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
