"""What every benchmark part shares: latency summaries, targets with PASS/MISS, result files."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"

# A simulated trial: two parameters, a value that improves with the epoch.
SPACE = {
    "x": {"type": "float", "low": 0.0, "high": 1.0},
    "y": {"type": "float", "low": 0.0, "high": 1.0},
}


def trial_value(params: dict[str, float], step: int) -> float:
    """The simulated validation loss of ``params`` after epoch ``step``."""
    return (params["x"] - 0.3) ** 2 + (params["y"] - 0.6) ** 2 + 1.0 / step


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50 and p99 (nearest rank) and the count of a list of latencies in ms."""
    if not samples_ms:
        return {"n": 0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    ordered = sorted(samples_ms)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 3),
    }


@dataclass(frozen=True)
class Check:
    """One target: ``measured`` against ``target``, higher or lower being better."""

    name: str
    measured: float
    target: float
    higher_is_better: bool
    unit: str = ""

    @property
    def passed(self) -> bool:
        """Whether the measured figure meets the target."""
        if self.measured != self.measured:  # NaN: not measured
            return False
        if self.higher_is_better:
            return self.measured >= self.target
        return self.measured <= self.target

    @property
    def margin(self) -> float:
        """How far from the target, as a factor (> 1 means met with room to spare)."""
        if not self.measured or self.measured != self.measured:
            return float("nan")
        ratio = self.measured / self.target if self.target else float("inf")
        return ratio if self.higher_is_better else 1 / ratio

    def line(self) -> str:
        """``PASS name: measured (target >= x, margin xm)``."""
        op = ">=" if self.higher_is_better else "<="
        verdict = "PASS" if self.passed else "MISS"
        return (
            f"{verdict} {self.name}: {self.measured:.4g}{self.unit} "
            f"(target {op} {self.target:.4g}{self.unit}, margin x{self.margin:.2f})"
        )

    def row(self) -> dict[str, Any]:
        """The check as a JSON object."""
        return {**asdict(self), "passed": self.passed, "margin": self.margin}


def write_results(part: str, results: dict[str, Any], checks: list[Check], table: str) -> None:
    """``bench/results/<part>.json`` (figures and checks) and ``<part>.md`` (table and checks)."""
    RESULTS.mkdir(exist_ok=True)
    payload = {"results": results, "checks": [check.row() for check in checks]}
    (RESULTS / f"{part}.json").write_text(json.dumps(payload, indent=2, default=str))
    lines = [table, "", *(f"- {check.line()}" for check in checks), ""]
    (RESULTS / f"{part}.md").write_text("\n".join(lines))
    print(table)
    for check in checks:
        print(check.line())


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:.3g}"
    return str(value)
