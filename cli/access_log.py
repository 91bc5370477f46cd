"""gunicorn's access log without the secrets a URL's query may carry."""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

# A lease (a checkpoint's upload sends it in the query: a write capability on the trial) and a
# token (the dashboard's ``/?token=``, which the README tells users to open).
_SECRET_IN_QUERY = re.compile(r"((?:^|[?&])(?:lease|token)=)[^&\s]*")


class RedactingAccessLog(Logger):  # type: ignore[misc]
    """gunicorn's logger, writing ``lease=…`` and ``token=…`` for those sent in a URL's query."""

    def atoms(self, resp: Any, req: Any, environ: Any, request_time: Any) -> dict[str, Any]:
        found: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in ("r", "q"):  # the request line, and the query alone
            if isinstance(found.get(key), str):
                found[key] = _SECRET_IN_QUERY.sub(r"\1…", found[key])
        return found
