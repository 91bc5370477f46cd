"""Following a study until it ends, with a progress bar."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from client import HPOJSONClient

FINISHED_STATES = ("complete", "pruned", "fail")


UNDER_WAY = ("preparing", "running")  # a study whose trials are to come


def follow_study(
    client: HPOJSONClient,
    study_id: int,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    alive: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Show finished trials out of the budget until the study is no longer preparing (held for
    its pre-flight checks) or running, or until ``timeout_s`` seconds have passed (the study is
    then answered as it is). ``alive``, called at each poll, raises where what runs the study
    has stopped (the one-machine stack's processes)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    study = client.study(study_id)
    with tqdm(total=study["n_trials"], unit="trial", desc=study["name"]) as bar:
        while True:
            finished = sum(study["counts"][state] for state in FINISHED_STATES)
            bar.update(finished - bar.n)
            bar.set_postfix(pruned=study["counts"]["pruned"], best=_best_value(study))
            if study["state"] not in UNDER_WAY or _past(deadline):
                return study
            time.sleep(poll_s)
            if alive is not None:
                alive()
            study = client.study(study_id)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _best_value(study: dict[str, Any]) -> str:
    best = study.get("best")
    return f"{best['value']:.4f}" if best else "-"
