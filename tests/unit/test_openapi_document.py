"""The OpenAPI document (``/openapi.json``, ``/docs``) names every operation the API serves,
two blueprints sharing a path included (``DELETE /datasets/{reference}`` beside the reads)."""

from __future__ import annotations

import re
from pathlib import Path

from api.app import create_app
from service.settings import Settings
from tests.support.dispatchers import DoNothingDispatcher

# Served outside the document: the document itself, its page and assets (Swagger UI's OAuth
# redirect page among them), the root's redirect to the page, and the operators' metrics.
UNDOCUMENTED = {
    "/",
    "/openapi.json",
    "/docs",
    "/oauth2-redirect.html",
    "/metrics",
    "/static/<path:filename>",
}


def test_every_route_the_api_serves_is_in_its_openapi_document(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'hpo.db'}", reaper_interval_s=0)
    app = create_app(settings, dispatcher=DoNothingDispatcher())
    paths = app.test_client().get("/openapi.json").get_json()["paths"]
    documented = {(path, method.upper()) for path, item in paths.items() for method in item}
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method)
        for rule in app.url_map.iter_rules()
        if rule.rule not in UNDOCUMENTED and not rule.rule.startswith("/swagger")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert ("/datasets/{reference}", "DELETE") in served
    assert served - documented == set()
