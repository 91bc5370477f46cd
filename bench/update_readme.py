"""Copy ``bench/results/summary.md`` into the README's Performance section, between its markers.

Usage: ``python -m bench.update_readme`` (after ``make bench``).
"""

from __future__ import annotations

from pathlib import Path

from bench.common import RESULTS

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN = "<!-- bench:begin (python -m bench.update_readme) -->"
END = "<!-- bench:end -->"


def refreshed(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    head, found, rest = readme.partition(BEGIN)
    if not found or END not in rest:
        raise SystemExit(f"README.md lacks the markers {BEGIN!r} … {END!r}")
    return f"{head}{BEGIN}\n{table.strip()}\n{END}{rest.split(END, 1)[1]}"


def main() -> None:
    table = (RESULTS / "summary.md").read_text()
    README.write_text(refreshed(README.read_text(), table))
    print(f"README.md Performance table refreshed from {RESULTS / 'summary.md'}")


if __name__ == "__main__":
    main()
