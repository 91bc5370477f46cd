"""Who is calling: a bearer token names a principal (a tenant's user, or a worker).

Every endpoint but health and the API document needs a token when tokens are required; without
that setting, a request with no token acts for the tenant 'default' (the embedded mode).
Worker tokens may only claim, report and complete trials (with the lease of their claim), run a
study's jobs, and read the data sets and checkpoints those need; claiming a trial and a job's
start and outcome are a worker's alone.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from api.errors import error_response
from service.errors import InvalidSpec
from service.tokens import ANONYMOUS, Principal, Role, TokenStore

OPEN_ENDPOINTS = frozenset(
    {"health.health_check", "openapi.doc_url", "openapi.openapi", "openapi.static", "static"}
    | {"docs.swagger_ui", "docs.swagger_ui_slash", "swagger.swagger", "swagger.static"}
    | {"metrics.metrics"}  # own checks
)
#: What only a worker does: claim the trial it was sent, start a job and give its outcome. A
#: tenant's user may not (it would pass its own study's pre-flight checks, or forge its vault score).
WORKER_ONLY_ENDPOINTS = frozenset({"trials.claim", "jobs.start_job", "jobs.finish_job"})
#: Everything a worker token may call.
WORKER_ENDPOINTS = WORKER_ONLY_ENDPOINTS | {
    "trials.heartbeat",
    "trials.report",
    "trials.report_many",
    "trials.complete",
    "trial_records.record_provenance",
    "trial_records.put_checkpoint",
    "trial_records.get_checkpoint",
    "dataset_reads.get_dataset",
    "dataset_reads.dataset_content",
}


def register_token_check(app: Flask, tokens: TokenStore, required: bool) -> None:
    """Resolve every request's principal into ``g.principal``, or refuse it (401, 403)."""

    @app.before_request
    def _authenticate() -> Response | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        principal = _principal(tokens, required)
        if principal is None:
            return _unauthorized()
        refusal = _refusal(principal, required)
        if refusal is not None:
            return error_response(403, refusal, [{"field": "Authorization", "problem": refusal}])
        g.principal = principal
        return None


def _refusal(principal: Principal, required: bool) -> str | None:
    """Why ``principal`` may not call this endpoint (``None``: it may). Without required tokens
    the service trusts every caller (the embedded mode): its workers send no token."""
    if principal.role is Role.WORKER and request.endpoint not in WORKER_ENDPOINTS:
        return "a worker token may only claim, report and complete trials and run jobs"
    if required and principal.role is Role.USER and request.endpoint in WORKER_ONLY_ENDPOINTS:
        return "only a worker token may claim a trial or start and finish a job"
    return None


def lease_of_caller(lease: str | None) -> str | None:
    """The lease a request that writes to a trial sends, which a worker must send: its token
    reaches every tenant's trials, and the lease of its claim ties it to the one it runs."""
    principal: Principal = g.principal
    if lease is None and principal.role is Role.WORKER:
        raise InvalidSpec("a worker must send the lease its claim returned", field="lease")
    return lease


def current_tenant() -> str | None:
    """The tenant the request acts for (``None``: a worker, which serves every tenant)."""
    principal: Principal = g.principal
    return principal.tenant


def _principal(tokens: TokenStore, required: bool) -> Principal | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None if required else ANONYMOUS
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():  # the scheme is case-insensitive
        return None
    return tokens.authenticate(token.strip())


def _wrong_scheme() -> str | None:
    """What is wrong with an Authorization header of another form than ``Bearer <token>``
    (``Basic …``, a token alone), never echoing what it carries."""
    header = request.headers.get("Authorization", "").strip()
    scheme, space, _ = header.partition(" ")
    if not header or scheme.lower() == "bearer":
        return None
    named = (
        f"the {scheme} scheme" if space and scheme.isalpha() and len(scheme) <= 16 else "no scheme"
    )
    return f"{named}: send 'Authorization: Bearer <token>'"


def _unauthorized() -> Response:
    problem = _wrong_scheme() or "missing, unknown, revoked or expired bearer token"
    response = error_response(
        401, "a valid bearer token is needed", [{"field": "Authorization", "problem": problem}]
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response
