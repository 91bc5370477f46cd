"""``HPOClient``: the service's HTTP API with typed answers, for programs that call it.

Built on ``HPOJSONClient`` (client/http_client.py: one keep-alive connection pool, retries of what cannot have
taken effect), which the workers and the CLI use with plain JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from client.errors import StudyTimeout, specific_error
from client.http_client import HPOError, HPOJSONClient
from client.models import Assignment, Best, Importance, Pareto, Study, Trial

T = TypeVar("T")
DEFAULT_POLL_S = 1.0


class HPOClient:
    """Submit, follow and steer studies; ask / report / complete trials of your own training.

    Answers are pydantic models (``client/models.py``); error answers raise ``AuthError``,
    ``NotFoundError``, ``ConflictError`` or ``InvalidRequestError`` (all ``HPOError``).
    """

    def __init__(self, url: str, token: str | None = None, **options: Any) -> None:
        self.raw = HPOJSONClient(url, token, **options)

    def submit(self, spec: dict[str, Any] | str | Path) -> Study:
        """Submit a study: its definition as a mapping, or the path of a ``.json``/``.yaml`` file."""
        body = spec if isinstance(spec, dict) else load_spec_file(Path(spec))
        return Study.model_validate(self._checked(self.raw.create_study, body))

    def status(self, study_id: int) -> Study:
        """The study's state, counts by trial state and best so far."""
        return Study.model_validate(self._checked(self.raw.study, study_id))

    def studies(self) -> list[Study]:
        """Every study this token sees, newest first."""
        return [Study.model_validate(found) for found in self._checked(self.raw.studies)]

    def trials(self, study_id: int) -> list[Trial]:
        """Every trial of the study, in order."""
        return [Trial.model_validate(found) for found in self._checked(self.raw.trials, study_id)]

    def best(self, study_id: int) -> Best:
        """The best complete trial; ``NotFoundError`` while there is none."""
        return Best.model_validate(self._checked(self.raw.best, study_id))

    def pareto(self, study_id: int) -> Pareto:
        """A study of several objectives' Pareto front (its ``best`` answers 409 saying so)."""
        return Pareto.model_validate(self._checked(self.raw.pareto, study_id))

    def stop(self, study_id: int) -> Study:
        """Start no new trial; running ones finish."""
        return Study.model_validate(self._checked(self.raw.stop, study_id))

    def pause(self, study_id: int) -> Study:
        """Hold new trials back until ``resume``; running ones finish."""
        return Study.model_validate(self._checked(self.raw.pause, study_id))

    def resume(self, study_id: int) -> Study:
        """Let trials start again where the budget allows."""
        return Study.model_validate(self._checked(self.raw.resume, study_id))

    def delete(self, study_id: int) -> None:
        """Delete the study and its trials."""
        self._checked(self.raw.delete, study_id)

    def ask(self, study_id: int, idempotency_key: str | None = None) -> Assignment:
        """Start a trial of the study for this program to train; ``ConflictError`` when the
        budget or every slot is taken. Asked again with the same ``idempotency_key`` (one is
        made per call unless given) while the trial runs, the answer is the same trial."""
        return Assignment.model_validate(self._checked(self.raw.ask, study_id, idempotency_key))

    def report(self, trial: Assignment, step: int, value: float) -> bool:
        """Report an epoch's value; ``True``: the trial is pruned, stop training it."""
        return self._checked(self.raw.report, trial.trial_id, step, value, trial.lease)

    def heartbeat(self, trial: Assignment) -> None:
        """Renew the trial's lease while an epoch runs longer than ``trial.lease_ttl_s`` (each
        report renews it too); ``TrialConflictError`` once it is no longer the caller's."""
        self._checked(self.raw.heartbeat, trial.trial_id, trial.lease)

    def complete(self, trial: Assignment, value: float | None = None, **outcome: Any) -> Trial:
        """Finish the trial with its value (or ``state="failed", reason=…``, ``values=[…]``,
        ``metrics={…}``): the finished trial."""
        finished = self._checked(
            self.raw.complete, trial.trial_id, value, lease=trial.lease, **outcome
        )
        return Trial.model_validate(finished)

    def importance(self, study_id: int) -> Importance:
        """Parameter importances; ``ConflictError`` with fewer than two complete trials."""
        return Importance.model_validate(self._checked(self.raw.importance, study_id))

    def plot(self, study_id: int, kind: str) -> bytes:
        """A PNG figure: ``history``, ``intermediate``, ``importance`` or ``parallel_coordinate``."""
        return self._checked(self.raw.plot_png, study_id, kind)

    def best_model(self, study_id: int) -> bytes:
        """The best trial's checkpoint (safetensors bytes); ``NotFoundError`` without one."""
        return self._checked(self.raw.best_model, study_id)

    def wait(
        self, study_id: int, timeout: float | None = None, poll: float = DEFAULT_POLL_S
    ) -> Study:
        """Poll until the study is complete or stopped and return it; ``StudyTimeout`` after
        ``timeout`` seconds (default: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            study = self.status(study_id)
            if study.ended:
                return study
            if deadline is not None and time.monotonic() >= deadline:
                raise StudyTimeout(study, timeout or 0.0)
            time.sleep(poll)

    @staticmethod
    def _checked(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return call(*args, **kwargs)
        except HPOError as error:
            raise specific_error(error) from None


def load_spec_file(path: Path) -> dict[str, Any]:
    """The study definition in ``path`` (``.json``, ``.yaml`` or ``.yml``)."""
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a study definition (a mapping)")
    return data
