"""``hpo dashboard``: optuna-dashboard on the service's own database, behind the API's tokens.

optuna-dashboard reads Optuna's schema, which is the service's system of record, so it shows every
study and trial unchanged. A browser cannot send a bearer header: it opens the dashboard once with
``?token=…``, which is checked like the API checks a bearer token and kept in an HttpOnly cookie
(checked again on every request, so a revoked token stops working at once). Without a good token
the answer is 401 (on a stack that takes no tokens the link's token is dropped unchecked). The
dashboard shows every tenant's studies, so only user tokens of the tenant ``default`` (the
operators', e.g. ``HPO_API_TOKENS``) open it, and it is read-only: writes (notes, deletions) go
through the API, which keeps the service's own tables in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

import typer
from gunicorn.app.base import BaseApplication

from service.settings import Settings
from service.storage.database import Database
from service.tokens import DEFAULT_TENANT, Principal, Role, TokenStore

COOKIE_NAME = "hpo_dashboard_token"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TokenGate:
    """WSGI middleware: lets a request through to ``app`` only with an operator's token."""

    def __init__(self, app: WSGIApp, tokens: TokenStore, required: bool) -> None:
        self._app = app
        self._tokens = tokens
        self._required = required

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if "token" in query:
            return self._log_in(environ, query, start_response)
        if environ["REQUEST_METHOD"] not in READ_METHODS:
            return _answer(start_response, "405 Method Not Allowed", "the dashboard is read-only")
        if self._required and not self._allowed(_presented_token(environ)):
            return _answer(start_response, "401 Unauthorized", "open the dashboard with ?token=…")
        return self._app(environ, start_response)

    def _log_in(
        self, environ: dict[str, Any], query: dict[str, str], start_response: Callable[..., Any]
    ) -> Any:
        """Check the token in the URL, keep it in a cookie, and send the browser on without it.
        Where no token is required (an open stack), the token is dropped unchecked: the link an
        operator was given opens the dashboard there too."""
        token = query.pop("token")
        if self._required and not self._allowed(token):
            return _answer(start_response, "401 Unauthorized", "unknown or unfit token")
        rest = f"?{urlencode(query)}" if query else ""
        path = "/" + environ.get("PATH_INFO", "/").lstrip("/")  # never "//host": another site
        headers = [("Location", path + rest)]
        if self._required:
            cookie = f"{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/"
            headers.append(("Set-Cookie", cookie))
        start_response("303 See Other", [*headers, ("Content-Length", "0")])
        return [b""]

    def _allowed(self, token: str | None) -> bool:
        principal = self._tokens.authenticate(token) if token else None
        return principal is not None and _is_operator(principal)


def _is_operator(principal: Principal) -> bool:
    return principal.role is Role.USER and principal.tenant == DEFAULT_TENANT


def _presented_token(environ: dict[str, Any]) -> str | None:
    """The token in the cookie, or in an ``Authorization: Bearer`` header (for scripts)."""
    cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
    if COOKIE_NAME in cookies:
        return cookies[COOKIE_NAME].value
    authorization: str = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _answer(start_response: Callable[..., Any], status: str, message: str) -> list[bytes]:
    body = message.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if status.startswith("401"):
        headers.append(("WWW-Authenticate", "Bearer"))
    start_response(status, headers)
    return [body]


def dashboard_app(settings: Settings) -> TokenGate:
    """optuna-dashboard on ``settings.database_url``, behind the token gate."""
    from optuna_dashboard import wsgi

    database = Database(settings.database_url)
    tokens = TokenStore(database, frozenset(settings.accepted_tokens()))
    return TokenGate(wsgi(database.optuna), tokens, settings.tokens_required())


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings, host: str, port: int) -> None:
        self._settings = settings
        self._bind = f"{host}:{port}"
        super().__init__()

    def load_config(self) -> None:
        options = {"bind": self._bind, "workers": 1, "threads": 8, "worker_class": "gthread"}
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> TokenGate:
        return dashboard_app(self._settings)


def serve_dashboard(settings: Settings, host: str, port: int) -> None:
    """Run the dashboard until stopped."""
    _Gunicorn(settings, host, port).run()


def dashboard_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 8080,
) -> None:
    """Serve optuna-dashboard on the service's database (HPO_DATABASE_URL), behind its tokens:
    open http://HOST:PORT/?token=TOKEN once."""
    serve_dashboard(Settings(), host, port)
