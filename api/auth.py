"""Who is calling: a bearer token names a principal (a tenant's user, or a worker).

Every endpoint but health and the API document needs a token when tokens are required; without
that setting, a request with no token acts for the tenant 'default' (the embedded mode).
Worker tokens may only claim, report and complete trials.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from api.errors import error_response
from service.tokens import ANONYMOUS, Principal, Role, TokenStore

OPEN_ENDPOINTS = frozenset(
    {"health.health_check", "openapi.doc_url", "openapi.openapi", "openapi.static", "static"}
    | {"docs.swagger_ui", "swagger.swagger", "swagger.static", "metrics.metrics"}  # own checks
)
WORKER_BLUEPRINTS = frozenset({"trials", "jobs", "trial_records", "dataset_reads"})


def register_token_check(app: Flask, tokens: TokenStore, required: bool) -> None:
    """Resolve every request's principal into ``g.principal``, or refuse it (401, 403)."""

    @app.before_request
    def _authenticate() -> Response | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        principal = _principal(tokens, required)
        if principal is None:
            return _unauthorized()
        if principal.role is Role.WORKER and request.blueprint not in WORKER_BLUEPRINTS:
            message = "a worker token may only claim, report and complete trials"
            return error_response(403, message, [{"field": "Authorization", "problem": message}])
        g.principal = principal
        return None


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


def _unauthorized() -> Response:
    problem = "missing or unknown bearer token"
    response = error_response(
        401, "a valid bearer token is needed", [{"field": "Authorization", "problem": problem}]
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response
