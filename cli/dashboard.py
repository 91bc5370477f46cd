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

import logging
from collections.abc import Callable, Iterable
from http.cookies import SimpleCookie
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode

import typer
from gunicorn.app.base import BaseApplication

from cli.access_log import RedactingAccessLog
from cli.errors import refuse_placeholders
from service.errors import RETRY_AFTER_S, Unavailable
from service.json_logs import logging_config
from service.settings import Settings
from service.storage.database import DATABASE_OUTAGES, RETRY_LATER, Database
from service.tokens import DEFAULT_TENANT, Principal, Role, TokenStore

COOKIE_NAME = "hpo_dashboard_token"
NOT_AN_OPERATOR = (
    "the dashboard shows every tenant's studies: it takes tokens of the tenant default only"
)
# What a read of a database out of reach raises: the service's own refusal, or the database's.
OUT_OF_REACH: tuple[type[Exception], ...] = (Unavailable, *DATABASE_OUTAGES)
logger = logging.getLogger(__name__)
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class TokenGate:
    """WSGI middleware: lets a request through to ``app`` only with an operator's token."""

    def __init__(self, app: WSGIApp, tokens: TokenStore, required: bool) -> None:
        self._app = app
        self._tokens = tokens
        self._required = required

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            return self._gated(environ, start_response)
        except OUT_OF_REACH as error:  # the token check's read: as the API answers it
            logger.warning("database unavailable: %s", error)
            return _answer(start_response, "503 Service Unavailable", RETRY_LATER)

    def _gated(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        if "token" in query:
            return self._log_in(environ, query, start_response)
        if environ["REQUEST_METHOD"] not in READ_METHODS:
            return _answer(start_response, "405 Method Not Allowed", "the dashboard is read-only")
        refused = self._refusal(_presented_token(environ)) if self._required else None
        if refused is not None:
            status, message = refused
            if status.startswith("401"):
                message = "open the dashboard with ?token=…"
            return _answer(start_response, status, message)
        return self._app(environ, start_response)

    def _log_in(
        self, environ: dict[str, Any], query: dict[str, str], start_response: Callable[..., Any]
    ) -> Any:
        """Check the token in the URL, keep it in a cookie, and send the browser on without it.
        Where no token is required (an open stack), the token is dropped unchecked: the link an
        operator was given opens the dashboard there too."""
        token = query.pop("token")
        refused = self._refusal(token) if self._required else None
        if refused is not None:
            return _answer(start_response, *refused)
        rest = f"?{urlencode(query)}" if query else ""
        # Never "//host" nor "/\\host" (browsers read both as another site): the path quoted.
        path = "/" + quote(environ.get("PATH_INFO", "/").lstrip("/\\"), safe="/")
        headers = [("Location", path + rest)]
        if self._required:
            cookie = f"{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/"
            headers.append(("Set-Cookie", cookie))
        start_response("303 See Other", [*headers, ("Content-Length", "0")])
        return [b""]

    def _refusal(self, token: str | None) -> tuple[str, str] | None:
        """``None`` for an operator's token; else the status and why."""
        principal = self._tokens.authenticate(token) if token else None
        if principal is None:
            return "401 Unauthorized", "unknown, revoked or expired token"
        if not _is_operator(principal):
            return "403 Forbidden", NOT_AN_OPERATOR
        return None


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
    if status.startswith("503"):
        headers.append(("Retry-After", str(RETRY_AFTER_S)))
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
        options: dict[str, Any] = {
            "bind": self._bind,
            "workers": 1,
            "threads": 8,
            "worker_class": "gthread",
            # One control socket per user (~/.gunicorn/gunicorn.ctl): a second dashboard, or the
            # API, would take it over (and a failed start removed it). Nothing here uses it.
            "control_socket_disable": True,
            "loglevel": self._settings.log_level.lower(),
            "logconfig_dict": logging_config(self._settings.log_level),  # JSON lines, as the API
            "logger_class": RedactingAccessLog,  # no ?token= in the access log
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> TokenGate:
        return dashboard_app(self._settings)


def serve_dashboard(settings: Settings, host: str, port: int) -> None:
    """Run the dashboard until stopped. The database is opened here first, as ``hpo serve``
    does: a wrong URL or a server out of reach is one message naming HPO_DATABASE_URL, not a
    traceback from gunicorn's worker and its exit."""
    refuse_placeholders(settings)
    Database(settings.database_url).dispose()
    _Gunicorn(settings, host, port).run()


def dashboard_command(
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on")] = 8080,
) -> None:
    """Serve optuna-dashboard on the service's database (HPO_DATABASE_URL), behind its tokens:
    open http://HOST:PORT/?token=TOKEN once."""
    serve_dashboard(Settings(), host, port)
