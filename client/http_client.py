"""A small client of the service's HTTP API, used by the workers and the CLI."""

from __future__ import annotations

import uuid
from typing import Any

from urllib3.util.retry import Retry

from client.transport import Answer, ServiceUnreachable, Transport

DEFAULT_TIMEOUT_S = 30.0
IDEMPOTENCY_KEY = "Idempotency-Key"
IDEMPOTENT_TRIAL_CALLS = frozenset(
    {
        "report",
        "reports",
        "heartbeat",
        "claim",
        "complete",
        "start",
        "result",
        "provenance",
        "checkpoint",
    }
)
BACKOFF_FACTOR_S = 0.25
BACKOFF_MAX_S = 8.0
DEFAULT_RETRIES = 12  # 63.5 s of backoff (retries_lasting(60)): about a minute of outage
GARBLED_RETRIES = 3  # asks of an idempotent call whose answers were not JSON, in all


def retries_lasting(outage_s: float, longest_wait_s: float = BACKOFF_MAX_S) -> int:
    """The fewest retries whose waits add up to at least ``outage_s``, so that a call outlasts an
    outage that long: urllib3's backoff waits none before the first retry, then 0.5 s doubling
    up to ``BACKOFF_MAX_S``. A 503's ``Retry-After`` takes the place of a wait: where the service
    names a shorter one than ``BACKOFF_MAX_S``, pass it as ``longest_wait_s``."""
    if longest_wait_s <= 0:
        raise ValueError(f"longest_wait_s must be positive, not {longest_wait_s}")
    retries, waited_s = 0, 0.0
    while waited_s < outage_s:
        retries += 1
        waited_s += min(backoff_wait_s(retries), longest_wait_s)
    return retries


def backoff_wait_s(retry: int) -> float:
    """urllib3's backoff before a call's ``retry``-th retry (counted from 1)."""
    return 0.0 if retry <= 1 else min(BACKOFF_MAX_S, BACKOFF_FACTOR_S * 2 ** (retry - 1))


def _retry_policy(retries: int, *, idempotent: bool) -> Retry:
    """Retry what cannot have taken effect, on every method: a refused connection (the request
    never arrived) and 502/503/504 (the API answered that it could not reach its database, and
    rolled back). A broken or timed-out answer may hide an applied request, so it is retried only
    for the idempotent calls: report, heartbeat, claim and complete give the same result twice."""
    return Retry(
        total=retries,
        connect=retries,
        read=retries if idempotent else 0,
        status=retries,
        other=0,
        status_forcelist=(502, 503, 504),
        allowed_methods=None,
        backoff_factor=BACKOFF_FACTOR_S,
        backoff_max=BACKOFF_MAX_S,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


class HPOError(Exception):
    """The API answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {_error_text(body)}")
        self.status = status
        self.body = body

    @property
    def problems(self) -> list[dict[str, str]]:
        """The answer's ``{"field", "problem"}`` list (empty where it has none)."""
        problems = self.body.get("problems") if isinstance(self.body, dict) else None
        return [p for p in problems if isinstance(p, dict)] if isinstance(problems, list) else []


MAX_PROBLEMS_SHOWN = 3


def _error_text(body: Any) -> str:
    """An error answer in a line: its message, and the fields it names with their problems
    (``the request does not fit its schema: reports: the steps must rise...``): what a trial's
    failure reason then says."""
    if not isinstance(body, dict):
        return str(body)
    problems = body.get("problems")
    message = str(body.get("error"))
    named = [
        f"{p['field']}: {p['problem']}"
        for p in (problems if isinstance(problems, list) else [])[:MAX_PROBLEMS_SHOWN]
        if isinstance(p, dict) and "field" in p and str(p.get("problem")) not in message
    ]  # a problem the message says already (a conflict's, say) is not said twice
    return f"{message}: {'; '.join(named)}" if named else message


class TrialGone(HPOError):
    """The trial is no longer this caller's to run (finished, held by another, or deleted): stop it."""


class HPOJSONClient:
    """Calls the API with a bearer token; one keep-alive connection pool per client."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        """``retries``: how many times a call is retried at most (see :func:`retries_lasting`)."""
        self._transport = Transport(url, token, timeout_s)
        self.url = self._transport.url
        self.retries = retries
        self._retries = _retry_policy(retries, idempotent=False)
        self._idempotent_retries = _retry_policy(retries, idempotent=True)

    def create_study(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/studies", json=spec)

    def study(self, study_id: int) -> dict[str, Any]:
        return self._call("GET", f"/studies/{study_id}")

    def studies(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/studies")["studies"]
        return found

    def trials(self, study_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", f"/studies/{study_id}/trials")["trials"]
        return found

    def best(self, study_id: int) -> dict[str, Any]:
        return self._call("GET", f"/studies/{study_id}/best")

    def pareto(self, study_id: int) -> dict[str, Any]:
        """A study of several objectives' best trials: its Pareto front."""
        return self._call("GET", f"/studies/{study_id}/pareto")

    def stop(self, study_id: int) -> dict[str, Any]:
        return self._call("POST", f"/studies/{study_id}/stop")

    def pause(self, study_id: int) -> dict[str, Any]:
        return self._call("POST", f"/studies/{study_id}/pause")

    def resume(self, study_id: int) -> dict[str, Any]:
        return self._call("POST", f"/studies/{study_id}/resume")

    def delete(self, study_id: int) -> None:
        self._call("DELETE", f"/studies/{study_id}")

    def ask(self, study_id: int, idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a trial of the study for this program: its parameters and lease. The ask goes
        with an ``Idempotency-Key`` (a new UUID unless given), and an ask whose answer was lost
        on the way is asked for again with it: the repeat gets the same trial, not a second one.
        (An API from before the keys would start a second trial, as the caller asking again
        would: the trial of the lost answer is started either way, and expires unheard.)"""
        key = idempotency_key or uuid.uuid4().hex
        path = f"/studies/{study_id}/trials"
        return self._call("POST", path, headers={IDEMPOTENCY_KEY: key}, idempotent=True)

    def claim(self, trial_id: int, holder: str) -> dict[str, Any]:
        """Start a trial this worker was sent: ``{"lease", "lease_ttl_s", "next_decision_step"}``
        (the first step whose report can prune it); ``TrialGone`` if taken."""
        return self._call("POST", f"/trials/{trial_id}/claim", json={"holder": holder})

    def heartbeat(self, trial_id: int, lease: str | None = None) -> None:
        """Renew the trial's lease between reports; ``TrialGone`` if it was taken away."""
        self._call("POST", f"/trials/{trial_id}/heartbeat", json={"lease": lease})

    def report(self, trial_id: int, step: int, value: float, lease: str | None = None) -> bool:
        """Report an epoch's value; ``True`` means prune. ``TrialGone`` if the trial is over."""
        return bool(self.report_decision(trial_id, step, value, lease)["prune"])

    def report_decision(
        self, trial_id: int, step: int, value: float, lease: str | None = None
    ) -> dict[str, Any]:
        """Report an epoch's value; the whole answer: ``prune``, and ``next_decision_step`` (the
        first later step whose report can prune the trial; ``None``: none can)."""
        body = {"step": step, "value": value, "lease": lease}
        answer: dict[str, Any] = self._call("POST", f"/trials/{trial_id}/report", json=body)
        return answer

    def report_many(
        self,
        trial_id: int,
        reports: list[tuple[int, float]],
        lease: str | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Report several epochs' values, (step, value) with rising steps, in one request; the
        answer of the last one recorded (a prune ends the trial there). ``provenance``: fields
        :meth:`record_provenance` takes, recorded with them."""
        body: dict[str, Any] = {
            "reports": [{"step": s, "value": v} for s, v in reports],
            "lease": lease,
        }
        if provenance:
            body["provenance"] = provenance
        answer: dict[str, Any] = self._call("POST", f"/trials/{trial_id}/reports", json=body)
        return answer

    def complete(
        self,
        trial_id: int,
        value: float | None = None,
        state: str = "complete",
        reason: str | None = None,
        lease: str | None = None,
        *,
        values: list[float] | None = None,
        metrics: dict[str, float] | None = None,
        epoch_metrics: list[dict[str, float | None]] | None = None,
        reports: list[tuple[int, float]] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Finish a trial: ``complete`` with its value (or ``values``, one per objective, and named
        ``metrics``), ``pruned``, or ``failed`` with a reason; ``epoch_metrics``: one record per
        epoch, kept on the trial; ``reports``: a complete trial's epochs' values (step, value)
        not reported yet, recorded with the completion (one request instead of two);
        ``provenance``: fields :meth:`record_provenance` takes, recorded with it."""
        body: dict[str, Any] = {"state": state, "value": value, "reason": reason, "lease": lease}
        if values is not None:
            body["values"] = values
        if metrics:
            body["metrics"] = metrics
        if epoch_metrics:
            body["epoch_metrics"] = epoch_metrics
        if reports:
            body["reports"] = [{"step": step, "value": reported} for step, reported in reports]
        if provenance:
            body["provenance"] = provenance
        return self._call("POST", f"/trials/{trial_id}/complete", json=body)

    def evaluate(
        self, study_id: int, trial_id: int | None = None, ensemble_k: int | None = None
    ) -> dict[str, Any]:
        """Score the test split (the vault) of a trial's model (default: the best trial's) or
        of the top ``ensemble_k`` trials' ensemble, once per model: the job (poll ``job``)."""
        body = {"trial_id": trial_id, "ensemble_k": ensemble_k}
        return self._call("POST", f"/studies/{study_id}/evaluate", json=body)

    def ensemble(self, study_id: int, k: int) -> dict[str, Any]:
        """Score the top-k trials' ensemble on the validation split: the job (poll ``job``)."""
        return self._call("POST", f"/studies/{study_id}/ensemble", json={"k": k})

    def job(self, job_id: int) -> dict[str, Any]:
        """A study job (pre-flight, evaluation, ensemble): its state, and its result once done."""
        return self._call("GET", f"/jobs/{job_id}")

    def jobs(self, study_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", f"/studies/{study_id}/jobs")["jobs"]
        return found

    def start_job(self, job_id: int) -> dict[str, Any]:
        """A worker starts a study job: what it needs to run it; ``HPOError`` 409 once it ended."""
        return self._call("POST", f"/jobs/{job_id}/start")

    def finish_job(
        self, job_id: int, result: dict[str, Any] | None = None, reason: str | None = None
    ) -> dict[str, Any]:
        """A worker's outcome of a study job: its result, or why there is none."""
        body = {"result": result, "reason": reason}
        return self._call("POST", f"/jobs/{job_id}/result", json=body)

    def register_dataset(
        self, name: str, content: bytes, file_format: str, label_column: str | None = None
    ) -> dict[str, Any]:
        """Register a data set file (``npz`` or ``csv`` with its label column): its metadata."""
        query = {"name": name, "format": file_format, "label_column": label_column}
        params = {key: value for key, value in query.items() if value is not None}
        answer = self._raw("POST", "/datasets", data=content, params=params)
        return _json_of(answer, "POST /datasets")

    def datasets(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/datasets")["datasets"]
        return found

    def delete_dataset(self, reference: str | int) -> None:
        """Delete one of the tenant's data sets (409 while a study names it)."""
        self._call("DELETE", f"/datasets/{reference}")

    def dataset(self, reference: str | int, study_id: int | None = None) -> dict[str, Any]:
        """A registered data set's metadata (name, SHA-256, shape, classes), by name or id;
        ``study_id``: among that study's tenant's (a worker's read, for the study it runs)."""
        return self._call("GET", f"/datasets/{reference}", params=_scope(study_id))

    def dataset_content(self, reference: str | int, study_id: int | None = None) -> bytes:
        """A registered data set's file, as registered (``study_id``: as for ``dataset``)."""
        return self._raw("GET", f"/datasets/{reference}/content", params=_scope(study_id)).content

    def record_provenance(
        self, trial_id: int, fields: dict[str, Any], lease: str | None = None
    ) -> dict[str, Any]:
        """State a running trial's seed, trainer package and version, data hash and split."""
        body = {**fields, "lease": lease}
        return self._call("POST", f"/trials/{trial_id}/provenance", json=body)

    def put_checkpoint(self, trial_id: int, content: bytes, lease: str | None = None) -> str:
        """Upload a running trial's best checkpoint (safetensors); its SHA-256."""
        params = {"lease": lease} if lease else {}
        path = f"/trials/{trial_id}/checkpoint"
        kept = _json_of(self._raw("PUT", path, data=content, params=params), f"PUT {path}")
        return str(kept["sha256"])

    def checkpoint(self, trial_id: int) -> bytes:
        """A trial's best checkpoint (safetensors bytes)."""
        return self._raw("GET", f"/trials/{trial_id}/checkpoint").content

    def best_model(self, study_id: int) -> bytes:
        """The best trial's checkpoint (safetensors bytes)."""
        return self._raw("GET", f"/studies/{study_id}/best/model").content

    def _raw(
        self,
        method: str,
        path: str,
        data: bytes | None = None,
        params: dict[str, str] | None = None,
        *,
        asked_again_on_timeout: bool = True,
    ) -> Answer:
        """A call whose body or answer is a file rather than JSON."""
        idempotent = method in ("GET", "PUT") and asked_again_on_timeout
        retries = self._idempotent_retries if idempotent else self._retries
        answer = self._transport.call(method, path, retries, data=data, params=params)
        _raise_for_status(answer, path)
        return answer

    def importance(self, study_id: int) -> dict[str, Any]:
        """Parameter importances of the study's complete trials."""
        return self._call("GET", f"/studies/{study_id}/importance")

    def plot_png(self, study_id: int, kind: str) -> bytes:
        """A PNG figure of the study: ``history``, ``intermediate``, ``importance`` or
        ``parallel_coordinate``."""
        # Not asked again past the timeout: a figure slow to draw would be drawn once a retry.
        path = f"/studies/{study_id}/plots/{kind}.png"
        return self._raw("GET", path, asked_again_on_timeout=False).content

    def _call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
        idempotent: bool = False,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One JSON call, its answer's body. An answer of an idempotent call that is not JSON (cut
        short on the way, before its length was told) is asked for again, as a broken one is."""
        idempotent = _idempotent(method, path, idempotent)
        options: dict[str, Any] = {"headers": headers, "idempotent": idempotent, "params": params}
        for _ in range(GARBLED_RETRIES - 1 if idempotent else 0):
            found = _decoded(self._answer(method, path, json, **options))
            if not isinstance(found, ValueError):
                return found
        return _json_of(self._answer(method, path, json, **options), f"{method} {path}")

    def _answer(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        headers: dict[str, str] | None = None,
        idempotent: bool = False,
        params: dict[str, str] | None = None,
    ) -> Answer:
        """One call's answer (an error status raised); ``idempotent``: a repeat gives the same
        result (GETs and the trials' own calls are), so a broken or timed-out answer is asked
        for again."""
        idempotent = _idempotent(method, path, idempotent)
        retries = self._idempotent_retries if idempotent else self._retries
        answer = self._transport.call(
            method, path, retries, json=json, headers=headers, params=params
        )
        _raise_for_status(answer, path)
        return answer


def _idempotent(method: str, path: str, said: bool) -> bool:
    """Whether a repeat of the call gives the same result: GETs and the trials' own calls do,
    and a call said to (an ask with its key)."""
    return said or method == "GET" or path.rsplit("/", 1)[-1] in IDEMPOTENT_TRIAL_CALLS


def _decoded(answer: Answer) -> dict[str, Any] | ValueError:
    """An answer's JSON body (none for a 204); the decoder's error where it is not JSON."""
    if answer.status == 204:
        return {}
    try:
        found: dict[str, Any] = answer.json()
    except ValueError as garbled:  # not the API's answer (a proxy's page, a cut body)
        return garbled
    return found


def _scope(study_id: int | None) -> dict[str, str] | None:
    return None if study_id is None else {"study_id": str(study_id)}


def _json_of(answer: Answer, call: str) -> dict[str, Any]:
    """An answer's JSON body (none for a 204); ``ServiceUnreachable`` where it is not JSON."""
    found = _decoded(answer)
    if isinstance(found, ValueError):
        kind = answer.headers.get("Content-Type") or "no Content-Type"
        raise ServiceUnreachable(
            found,
            f"the answer to {call} is not the API's JSON (status {answer.status}, {kind}, "
            f"{len(answer.content)} bytes): cut short on the way, or another server's page "
            f"(is HPO_SERVICE_URL the API's?): {found}",
        ) from found
    return found


def _raise_for_status(answer: Answer, path: str) -> None:
    """``TrialGone`` for a trial's 404 or 409; ``HPOError`` for any other error, and for a
    redirect (the transport follows none: the caller should use the URL it names)."""
    if answer.status < 300:
        return
    if answer.status < 400:
        where = answer.headers.get("Location") or "nowhere said"
        raise HPOError(
            answer.status, f"redirected to {where}: give the client the URL the API answers at"
        )
    gone = answer.status in (404, 409) and path.startswith("/trials/")
    raise (TrialGone if gone else HPOError)(answer.status, _body(answer))


def _body(answer: Answer) -> Any:
    try:
        return answer.json()
    except ValueError:
        return answer.text
