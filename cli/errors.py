"""What the ``hpo`` command prints for an error a user can act on, instead of a traceback."""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from urllib3.exceptions import LocationValueError, ReadTimeoutError

from client import HPOError, ServiceUnreachable
from service.errors import ServiceError
from service.settings import PLACEHOLDER, Settings

T = TypeVar("T")
MAX_BODY_CHARS = 2000
# A command's calls bridge a few seconds of API restart (backoff 0.5, 1, 2, 4 s), not the
# minute a worker's do: a user is waiting at the prompt.
CLI_RETRIES = 5
TOKEN_HINTS = {
    401: "HPO_TOKEN must be a token the API accepts (it is missing, unknown, revoked or expired)",
    403: "HPO_TOKEN's token may not do this (a worker's token, or another tenant's)",
}
DATABASE_URL_FORMS = "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/NAME"


class StudyFileError(Exception):
    """A study file that cannot be read as a study definition (the message names the file)."""


class StackPartStopped(RuntimeError):
    """A process of the one-machine stack has stopped: its name, and the end of its log."""

    def __init__(self, name: str, log_path: Path) -> None:
        tail = log_path.read_text(errors="replace").splitlines()[-5:] if log_path.exists() else []
        lines = "".join(f"\n  {line}" for line in tail)
        super().__init__(
            f"the stack's {name} process has stopped; its log ({log_path}) ends:{lines}"
        )


class PortTaken(RuntimeError):
    """The one-machine stack's port is another server's."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is taken (another server listens there): give --port")


class MissingExtra(Exception):
    """A command needs a package of an extra that is not installed (the message names it)."""


class SettingError(Exception):
    """An ``HPO_`` setting the command cannot use (the message names it)."""


def service_url_checked(make: Callable[[], T]) -> T:
    """``make()``, a client of ``HPO_SERVICE_URL``; ``SettingError`` where that is no URL."""
    try:
        return make()
    except (ValueError, LocationValueError) as error:
        raise SettingError(f"HPO_SERVICE_URL is not an http(s) URL of the API: {error}") from None


def explained(error: BaseException) -> str | None:
    """The message for an error the user can act on; ``None`` for anything else (a bug, whose
    traceback is worth seeing)."""
    if isinstance(error, HPOError) and _is_a_page(error.body):
        return f"error {error.status}: {_not_the_api(error.body)}"
    if isinstance(error, HPOError) and error.status in TOKEN_HINTS:
        said = error.body.get("error") if isinstance(error.body, dict) else None
        return f"error {error.status}: {said or error}\n{TOKEN_HINTS[error.status]}"
    if isinstance(error, HPOError):
        return f"error {error.status}:\n{_body_text(error.body)}"
    if isinstance(error, ServiceUnreachable) and _timed_out(error):
        return f"error: {error} (the API is busy, or the request is slow to answer)"
    if isinstance(error, ServiceUnreachable):
        return f"error: {error} (is the API running at HPO_SERVICE_URL, and is it the API?)"
    if isinstance(error, ValidationError) and error.title == "Settings":
        return f"error: the HPO_ settings are not valid:\n{_settings_problems(error)}"
    if isinstance(error, SettingsError):
        return f"error: the HPO_ settings are not valid: {_unparsed_setting(error)}"
    if isinstance(error, NoSuchModuleError):  # postgres://, mysql://: no dialect installed so
        return (
            f"error: the database (HPO_DATABASE_URL) cannot be opened: {_first_line(error)} "
            f"(the service takes {DATABASE_URL_FORMS})"
        )
    if _missing_driver(error):
        return (
            f"error: the database (HPO_DATABASE_URL) cannot be opened: {_first_line(error)} "
            f"(the service takes {DATABASE_URL_FORMS})"
        )
    if isinstance(error, OperationalError) or _bad_database_url(error):
        return f"error: the database (HPO_DATABASE_URL) cannot be opened: {_first_line(error)}"
    if isinstance(error, StudyFileError | SettingError | ServiceError | MissingExtra):
        return f"error: {error}"
    if isinstance(error, StackPartStopped | PortTaken):
        return f"error: {error}"
    if isinstance(error, OSError) and error.filename is not None:
        return f"error: {error.filename}: {error.strerror}"
    return None


def _bad_database_url(error: BaseException) -> bool:
    """SQLAlchemy's refusal of a URL it cannot parse (its other ``ArgumentError``\\ s are bugs)."""
    return isinstance(error, ArgumentError) and "SQLAlchemy URL" in str(error)


def _missing_driver(error: BaseException) -> bool:
    """A database whose driver is not installed: Optuna's storage says so, or SQLAlchemy's
    dialect fails to import it (``mysql://`` wants MySQLdb)."""
    if not isinstance(error, ImportError):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return "DB access module" in str(error) or any(
        "sqlalchemy/dialects/" in frame.filename for frame in frames
    )


def _timed_out(error: ServiceUnreachable) -> bool:
    """Whether the API took the request and did not answer in time (it runs: it is slow)."""
    cause = getattr(error.reason, "reason", error.reason)  # urllib3's MaxRetryError wraps it
    return isinstance(cause, ReadTimeoutError)


def _is_a_page(body: object) -> bool:
    """An HTML page where the API answers JSON: another server (a proxy's, a web server's)."""
    return isinstance(body, str) and body.lstrip()[:15].lower().startswith(("<!doctype", "<html"))


def _not_the_api(page: str) -> str:
    title = re.search(r"<title>\s*(.*?)\s*</title>", page, re.IGNORECASE | re.DOTALL)
    named = f" ({title.group(1)[:200]!r})" if title and title.group(1) else ""
    return (
        f"the server answered with an HTML page{named}, not the API's JSON: "
        "is HPO_SERVICE_URL the API's address (and the path its root)?"
    )


def _body_text(body: object) -> str:
    text = json.dumps(body, indent=2) if not isinstance(body, str) else body
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + " …"


def _settings_problems(error: ValidationError) -> str:
    return "\n".join(
        f"  {_setting_name(problem['loc'])}{problem['msg'].removeprefix('Value error, ')}"
        for problem in error.errors(include_url=False)
    )


def _setting_name(location: tuple[int | str, ...]) -> str:
    """``HPO_API_TOKENS (item 0): `` for a problem at ``("api_tokens", 0)``."""
    if not location:
        return ""
    field, *within = location
    where = f" (item {'.'.join(str(part) for part in within)})" if within else ""
    return f"HPO_{str(field).upper()}{where}: "


def _unparsed_setting(error: SettingsError) -> str:
    """pydantic-settings' refusal of a value it could not decode (a list that is no JSON),
    naming the variable rather than the field and the settings source."""
    named = re.search(r'field "(\w+)"', str(error))
    if named is None:
        return f"{error} ({error.__cause__})"
    return f"HPO_{named.group(1).upper()} must be JSON (a list: '[\"…\"]'): {error.__cause__}"


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def refuse_placeholders(settings: Settings) -> None:
    """``SettingError`` naming each secret that still holds a placeholder of deploy/."""
    held = settings.placeholder_settings()
    if held:
        raise SettingError(
            f"{', '.join(held)} still hold{'s' if len(held) == 1 else ''} a placeholder of "
            f"deploy/ ({PLACEHOLDER}…): put a secret of your own in each, e.g. python -c "
            '"import secrets; print(secrets.token_urlsafe(32))" (deploy/README.md)'
        )
