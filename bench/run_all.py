"""Every benchmark part in one run, then every target with PASS/MISS and a summary table.

Parts: control plane (``bench.control_plane``), tuning quality (``bench.tuning_quality``), worker
overhead (``bench.worker_overhead``), each in its own process. ``--quick`` runs each part small
(a few minutes in all; see the README for what it leaves out). Results: ``bench/results/*.json``,
``*.md``, ``tuning_quality.png`` and ``summary.md`` (the README's Performance table, with the
machine it came from; ``python -m bench.update_readme`` copies it into the README).
``--full`` runs the sizes the benchmark's issue names (1,000 trials a run, 10,000 of history,
10 seeds and twice the epochs: about 25 minutes on 2 cores); the default keeps under 15 minutes.
Usage: ``python -m bench.run_all [--quick | --full] [--no-ray] [--no-postgres] [--only PART ...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS

PARTS = ("control_plane", "tuning_quality", "worker_overhead")


def machine() -> str:
    """The CPU model, cores, memory and OS, in one line."""
    model = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{model}, {os.cpu_count()} cores{memory}, {system}"


def run_part(part: str, options: list[str]) -> float:
    """Run one part in its own process; its wall time in seconds."""
    started = time.perf_counter()
    print(f"== {part} {' '.join(options)}", flush=True)
    subprocess.run([sys.executable, "-m", f"bench.{part}", *options], check=True)
    return time.perf_counter() - started


def summary(walls: dict[str, float], mode: str) -> str:
    """The Markdown summary: every check of every part, and where it ran."""
    lines = [
        f"Measured {_utc(time.time())} on {machine()}"
        f"{f' ({mode})' if mode else ''}; parts took "
        + ", ".join(f"{part} {wall:.0f} s" for part, wall in walls.items())
        + ".",
        "",
        "| target | measured | goal | verdict |",
        "|---|---|---|---|",
    ]
    earlier = [p for p in PARTS if p not in walls and (RESULTS / f"{p}.json").exists()]
    if earlier:
        lines[0] += (
            " Figures of "
            + ", ".join(
                f"{p} (written {_utc((RESULTS / f'{p}.json').stat().st_mtime)})" for p in earlier
            )
            + " come from an earlier run."
        )
    for part in PARTS:
        path = RESULTS / f"{part}.json"
        if not path.exists():
            continue
        for check in json.loads(path.read_text())["checks"]:
            lines.append(_row(check))
    for part in PARTS:
        table = RESULTS / f"{part}.md"
        if table.exists():
            lines += ["", f"**{part.replace('_', ' ')}**", "", table.read_text().split("\n\n- ")[0]]
    return "\n".join(lines) + "\n"


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def _row(check: dict[str, Any]) -> str:
    op = "≥" if check["higher_is_better"] else "≤"
    verdict = "PASS" if check["passed"] else f"MISS (margin x{check['margin']:.2f})"
    unit = check["unit"]
    measured, goal = f"{check['measured']:.4g}{unit}", f"{op} {check['target']:.4g}{unit}"
    return f"| {check['name']} | {measured} | {goal} | {verdict} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--full", action="store_true", help="the issue's sizes: ~25 minutes")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--only", nargs="*", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    common = ["--quick"] * args.quick + ["--full"] * args.full
    walls: dict[str, float] = {}
    for part in args.only:
        options = list(common)
        if part == "control_plane":
            options += ["--no-ray"] * args.no_ray + ["--no-postgres"] * args.no_postgres
        walls[part] = run_part(part, options)
    text = summary(walls, "--quick" if args.quick else "--full" if args.full else "")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.md").write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
