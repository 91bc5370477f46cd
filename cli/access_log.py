"""gunicorn's access log without the secrets a URL's query may carry."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

# A lease (a checkpoint's upload sends it in the query: a write capability on the trial) and a
# token (the dashboard's ``/?token=``, which the README tells users to open).
SECRET_FIELDS = frozenset({"lease", "token"})


class RedactingAccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, writing ``lease=…`` and ``token=…`` for those sent in a URL's query."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        if isinstance(found.get("q"), str):  # the query alone
            found["q"] = redacted_query(found["q"])
        if isinstance(found.get("r"), str):  # the request line: METHOD TARGET VERSION
            method, _, rest = found["r"].partition(" ")
            target, _, version = rest.rpartition(" ") if " " in rest else (rest, "", "")
            path, mark, query = target.partition("?")
            found["r"] = f"{method} {path}{mark}{redacted_query(query)} {version}".rstrip()
        return found


def redacted_query(query: str) -> str:
    """``query`` with the value of each secret field written ``…``, its name read as the server
    reads it (decoded: ``%74oken=`` is ``token=``, and was logged whole)."""
    fields = []
    for field in query.split("&"):
        name, equals, _ = field.partition("=")
        secret = unquote_plus(name).strip().lower() in SECRET_FIELDS
        fields.append(f"{name}{equals}…" if secret and equals else field)
    return "&".join(fields)
