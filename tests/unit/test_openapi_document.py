"""The OpenAPI document (``/openapi.json``, ``/docs``) names every operation the API serves,
two blueprints sharing a path included (``DELETE /datasets/{reference}`` beside the reads)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from api.app import create_app
from api.limits import MAX_BODY_BYTES
from api.schemas import MAX_ID
from service.settings import Settings
from tests.support.dispatchers import DoNothingDispatcher

# Served outside the document: the document itself, its page and assets (Swagger UI's OAuth
# redirect page among them), the root's redirect to the page, and the operators' metrics.
UNDOCUMENTED = {
    "/",
    "/openapi.json",
    "/docs",
    "/docs/",
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


def published(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'hpo.db'}", reaper_interval_s=0, require_tokens=False
    )
    app = create_app(settings, dispatcher=DoNothingDispatcher())
    client = app.test_client()
    return client, client.get("/openapi.json").get_json()


def test_request_bodies_are_described_as_their_models_validate_them(tmp_path: Path) -> None:
    """flask-openapi3 dropped ``patternProperties``: a study's ``space`` was any object."""
    _, document = published(tmp_path)
    schemas = document["components"]["schemas"]
    [space_values] = schemas["StudySpec"]["properties"]["space"]["patternProperties"].values()
    assert {ref["$ref"].rsplit("/", 1)[-1] for ref in space_values["oneOf"]} == {
        "FloatParam",
        "IntParam",
        "CategoricalParam",
    }
    assert schemas["Completion"]["properties"]["metrics"]["propertyNames"]["maxLength"] == 64
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(document)))
    assert referenced <= set(schemas)  # no reference left dangling
    assert "ValidationErrorModel" not in schemas  # flask-openapi3's, which the API never sends


def test_operations_are_named_after_their_views_and_summed_up_in_whole_sentences(
    tmp_path: Path,
) -> None:
    _, document = published(tmp_path)
    operations = [op for item in document["paths"].values() for op in item.values()]
    ids = [operation["operationId"] for operation in operations]
    assert len(ids) == len(set(ids)) and "create_study" in ids and "ask_trial" in ids
    for operation in operations:
        assert operation["description"].startswith(operation["summary"].rstrip("…")), operation
        assert "<br/>" not in operation["description"] and "``" not in operation["description"]


def test_the_example_study_is_one_the_api_takes(tmp_path: Path) -> None:
    client, document = published(tmp_path)
    body = document["paths"]["/studies"]["post"]["requestBody"]["content"]["application/json"]
    created = client.post("/studies", json=body["example"])
    assert created.status_code == 201, created.get_json()


def test_downloads_and_ids_are_described_as_served(tmp_path: Path) -> None:
    _, document = published(tmp_path)
    paths = document["paths"]
    checkpoint = paths["/trials/{trial_id}/checkpoint"]["get"]["responses"]["200"]
    assert checkpoint["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    plot = paths["/studies/{study_id}/plots/{kind}.png"]["get"]["responses"]["200"]
    assert "image/png" in plot["content"]
    [study_id] = paths["/studies/{study_id}"]["get"]["parameters"]
    assert (study_id["schema"]["minimum"], study_id["schema"]["maximum"]) == (1, MAX_ID)


def test_answers_are_documented_with_their_headers_and_only_the_errors_they_can_be(
    tmp_path: Path,
) -> None:
    client, document = published(tmp_path)
    paths = document["paths"]
    create = paths["/studies"]["post"]
    created = client.post(
        "/studies", json=create["requestBody"]["content"]["application/json"]["example"]
    )
    assert created.headers["Location"] and "Location" in create["responses"]["201"]["headers"]
    best = paths["/studies/{study_id}/best"]["get"]["responses"]
    assert "ETag" in best["200"]["headers"] and {"304", "412"} <= set(best)
    model = paths["/studies/{study_id}/best/model"]["get"]["responses"]["200"]
    assert "X-HPO-Trial-Id" in model["headers"]
    operations = [op for item in paths.values() for op in item.values()]
    for operation in operations:
        responses = operation["responses"]
        assert "Retry-After" in responses["503"]["headers"], operation["operationId"]
        assert "405" not in responses and {"413", "415"} <= set(responses)  # any body is checked
        if "requestBody" not in operation:
            assert "400" not in responses, operation["operationId"]
    assert set(paths["/health"]["get"]["responses"]) == {"200", "413", "415", "503"}
    assert "404" not in paths["/studies"]["get"]["responses"]
    content = paths["/datasets/{reference}/content"]["get"]["responses"]["200"]["headers"]
    assert {"X-Content-SHA256", "Content-Disposition"} <= set(content)
    assert "WWW-Authenticate" in create["responses"]["401"]["headers"]


def test_a_body_where_none_goes_is_answered_as_documented(tmp_path: Path) -> None:
    """413 and 415 are answered to any request with such a body, whatever the operation."""
    client, document = published(tmp_path)
    health = document["paths"]["/health"]["get"]["responses"]
    too_large = client.get("/health", data=b"x" * (MAX_BODY_BYTES + 1))
    encoded = client.delete("/studies/1", data=b"{}", headers={"Content-Encoding": "gzip"})
    assert too_large.status_code == 413 and "413" in health
    assert encoded.status_code == 415
    assert "415" in document["paths"]["/studies/{study_id}"]["delete"]["responses"]
