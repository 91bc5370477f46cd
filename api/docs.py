"""``GET /docs``: Swagger UI over ``/openapi.json``, with its assets served by this app (no CDN).

The UI's scripts and styles come from the ``flask-openapi3-swagger`` plugin, which flask-openapi3
registers at ``/swagger`` (static files under ``/swagger/...``); this page is the same UI at the
conventional address.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template_string
from flask_openapi3_swagger.templates import swagger_html_string
from werkzeug.wrappers import Response

DOCS_ENDPOINT = "docs.swagger_ui"
docs = Blueprint("docs", __name__)


@docs.get("/docs")
def swagger_ui() -> str:
    """The browsable API document."""
    # The page's links are relative: from /docs, "swagger/js/..." and "openapi.json" resolve to
    # the plugin's assets and the document at the root.
    return render_template_string(
        swagger_html_string, doc_url="openapi.json", swagger_config={}, oauth_config=None
    )


@docs.get("/docs/")
def swagger_ui_slash() -> Response:
    """``/docs/`` (a trailing slash typed or linked) is the page's address: a redirect to it
    (served there, the page's relative links would miss its assets)."""
    return redirect("../docs", code=308)
