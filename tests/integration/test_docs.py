"""``/docs``: Swagger UI over the API document, with every asset served by the API itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
import requests

from cli.local_stack import LocalStack

pytestmark = pytest.mark.integration


def test_docs_page_loads_the_openapi_document_and_local_assets(stack: LocalStack) -> None:
    page = requests.get(f"{stack.url}/docs", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle" in html

    document_url = re.search(r'new URL\("([^"]+)", window\.location\.href\)', html)
    assert document_url is not None
    document = requests.get(urljoin(page.url, document_url.group(1)), timeout=10)
    assert document.status_code == 200
    assert "/studies/{study_id}/best" in document.json()["paths"]

    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(asset.endswith("swagger-ui-bundle.js") for asset in assets)
    for asset in assets:
        assert not asset.startswith(("http://", "https://", "//")), f"{asset} is not local"
        served = requests.get(urljoin(page.url, asset), timeout=10)
        assert served.status_code == 200, asset
        assert len(served.content) > 0
