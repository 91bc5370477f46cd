"""Bearer tokens: every endpoint but health and the API document needs one, when tokens are set."""

from __future__ import annotations

import hmac

from flask import Flask, Response, request

from api.errors import error_response

OPEN_ENDPOINTS = frozenset(
    {"health.health_check", "openapi.doc_url", "openapi.openapi", "openapi.static", "static"}
)


def register_token_check(app: Flask, accepted_tokens: set[str]) -> None:
    """Refuse requests without an accepted bearer token; no tokens configured means an open API."""
    if not accepted_tokens:
        return

    @app.before_request
    def _check_token() -> Response | None:
        if request.endpoint in OPEN_ENDPOINTS:
            return None
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer" and any(
            hmac.compare_digest(sent.strip(), t) for t in accepted_tokens
        ):
            return None
        response = error_response(
            401,
            "a valid bearer token is needed",
            [{"field": "Authorization", "problem": "missing or unknown token"}],
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
